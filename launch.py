"""Runs one experiment, chosen by flags.

    python launch.py --config=vae                       # configs/vae.py
    python launch.py --config=vae:digits                # get_config("digits")
    python launch.py --config=cnn --config.batch_size=256 --workdir=/tmp/cnn
    python launch.py --config=path/to/my_config.py
    python launch.py --config=cnn --workdir=/tmp/cnn --mode=eval   # test a checkpoint
    python launch.py --config=vae --workdir=/tmp/vae --mode=sample --num_samples=64
    python launch.py --config=cnn --coordinator_address=host0:1234 --num_processes=2 --process_id=0

Exit status (each failure is one line on stderr):
  0   done, and the config's gate (if any) met
  1   the gate missed
  2   a usage, config or data error: nothing was trained
  3   training diverged (non-finite loss, gradient or parameters); the last good
      checkpoint is kept
  75  stopped by SIGTERM/SIGINT after writing a checkpoint: rerun to resume
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF, when it runs, only reads data
ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

EXIT_GATE_MISSED = 1
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again


def fail(message: str, status: int = EXIT_USER_ERROR):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def available_configs() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                if f.endswith(".py") and f not in ("__init__.py", "common.py"))


def resolve_config_flag(argv: list[str]) -> tuple[list[str], str]:
  """Rewrites ``--config=NAME[:ARG]`` to the config file's path; returns argv and a run name."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      index, value = i, arg[len("--config="):]
      break
    if arg == "--config" and i + 1 < len(argv):
      index, value = i, argv.pop(i + 1)
      break
  else:
    fail(f"--config is required; one of: {', '.join(available_configs())}, or a path to a .py file")
  name, _, config_arg = value.partition(":")
  path = name if name.endswith(".py") else os.path.join(ROOT, "configs", f"{name}.py")
  if not os.path.isfile(path):
    fail(f"unknown config {name!r}; available: {', '.join(available_configs())}, "
         f"or a path to a .py file")
  argv[index] = f"--config={path}" + (f":{config_arg}" if config_arg else "")
  run_name = os.path.splitext(os.path.basename(path))[0] + (f"_{config_arg}" if config_arg else "")
  return argv, run_name


class QuietLibraries:
  """Keeps the libraries' INFO chatter (orbax, TFDS) out of the run's log."""
  QUIET = ("/orbax/", "/tensorflow_datasets/")

  def filter(self, record) -> bool:
    return record.levelno > 20 or not any(p in record.pathname for p in self.QUIET)


def one_line(error: BaseException) -> str:
  """An exception's message on one line: hints joined, tracebacks cut to their last line."""
  text = str(error.args[0]) if isinstance(error, (AttributeError, KeyError)) and error.args else str(error)
  text = text.replace("\\n", "\n").replace("\\'", "'")
  if len(text) > 1 and text[0] == text[-1] == "'":
    text = text[1:-1]
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    lines = [lines[0].rstrip(":"), lines[-1]]
  return "; ".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing where every bad flag or config override is one line, exit 2."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(one_line(e))
  except (AttributeError, KeyError) as e:  # ml_collections: no such field
    fail(f"bad --config override: no field {one_line(e)}")
  except (TypeError, ValueError) as e:  # ml_collections: a value of the wrong type
    fail(f"bad --config override: {one_line(e)}")


def apply_xla_flags(config) -> None:
  """Puts ``config.xla_flags`` in front of the XLA_FLAGS environment variable (flags the
  user set there come later, so they win). XLA reads it when JAX starts its backend, so
  this must run before the first computation."""
  extra = config.get("xla_flags", "")
  if extra:
    os.environ["XLA_FLAGS"] = " ".join(f for f in (extra, os.environ.get("XLA_FLAGS", "")) if f)


def exit_status(error: Exception) -> int:
  from research import errors
  if isinstance(error, errors.Preempted):
    return EXIT_PREEMPTED
  if isinstance(error, errors.NonFiniteError):
    return EXIT_DIVERGED
  return EXIT_USER_ERROR


def main() -> None:
  argv, run_name = resolve_config_flag(sys.argv)

  from absl import app, flags, logging
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Experiment config: NAME[:ARG] or a path.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", os.path.join("workdirs", run_name),
                      "Where checkpoints, metrics and images go; rerunning resumes.")
  flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"],
                    "train (resuming from the workdir's checkpoints), eval: the newest "
                    "checkpoint's validation and test metrics (for VAEs the test NLL), "
                    "or sample: --num_samples images from the newest checkpoint "
                    "(generative models), written to WORKDIR/samples; neither trains.")
  flags.DEFINE_integer("num_samples", 64, "Images that --mode=sample draws.")
  flags.DEFINE_bool("distributed", False,
                    "Multi-process run: join the job through jax.distributed, detecting the "
                    "cluster (Cloud TPU pod slice, SLURM, Open MPI) from the environment "
                    "unless the three flags below are given.")
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 in a multi-process run (implies --distributed; "
                      "or set JAX_COORDINATOR_ADDRESS).")
  flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
  flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")

  def run(_):
    from research import errors
    from research.core import distributed

    FLAGS = flags.FLAGS
    apply_xla_flags(FLAGS.config)
    distributed.initialize(distributed.Cluster(
        FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id))
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(QuietLibraries())
    config, workdir = FLAGS.config, FLAGS.workdir
    print(f"config {run_name}:\n{config}")
    print(distributed.describe())
    print(f"workdir: {os.path.abspath(workdir)}")
    try:
      if "study" in config:  # a program of runs (research/studies)
        if FLAGS.mode != "train":
          raise errors.ConfigError(f"--mode={FLAGS.mode} is for a single run; a study trains")
        from research.studies import base as studies
        results = studies.run_study(config, workdir)
      else:
        results = run_one(config, workdir, FLAGS.mode, FLAGS.num_samples)
    except errors.UserError as e:
      fail(str(e), exit_status(e))
    print("results: " + ", ".join(f"{k}={v:.5g}" for k, v in sorted(results.items())))
    if results.get("gate_passed") == 0.0:
      fail(f"gate missed: {config.gate} does not hold", EXIT_GATE_MISSED)

  app.run(run, argv=argv, flags_parser=parse_flags)


def run_one(config, workdir: str, mode: str, num_samples: int) -> dict[str, float]:
  """One run in ``workdir``: trained (resuming), evaluated or sampled from."""
  from research.train import validation
  validation.validate(config, workdir)  # before the heavy imports: bad configs fail fast
  from research.train import loop, modes
  if mode == "eval":
    return modes.evaluate_checkpoint(config, workdir)
  if mode == "sample":
    return modes.sample_checkpoint(config, workdir, num_samples)
  return loop.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  main()
