"""Runs one experiment, chosen by flags.

    python launch.py --list_configs                     # every config, with its command and result
    python launch.py --config=cnn:digits --dry_run      # its fields, validated; runs nothing
    python launch.py --config=vae                       # configs/vae.py
    python launch.py --config=vae:digits                # get_config("digits")
    python launch.py --config=cnn --config.batch_size=256 --workdir=/tmp/cnn
    python launch.py --config=path/to/my_config.py
    python launch.py --config=cnn --workdir=/tmp/cnn --mode=eval   # test a checkpoint
    python launch.py --mode=eval --workdir=/tmp/cnn     # the same, config from WORKDIR/config.json
    python launch.py --config=vae --workdir=/tmp/vae --mode=sample --num_samples=64
    python launch.py --config=cnn --coordinator_address=host0:1234 --num_processes=2 --process_id=0

Exit status (each failure is one line on stderr):
  0   done, and the config's gate (if any) met
  1   the gate missed
  2   a usage, config or data error: nothing was trained
  3   training diverged (non-finite loss, gradient or parameters, or final metrics); the
      last good checkpoint is kept
  73  the workdir is in use by another live run: nothing was written
  74  a write to the workdir failed (full disk, read-only or removed folder): what was
      written before is intact; free space and rerun to resume
  75  stopped by SIGTERM/SIGINT (in training after writing a checkpoint; in start-up or the
      final evaluation with the checkpoints so far): rerun to resume
"""
import contextlib
import dataclasses
import errno
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF, when it runs, only reads data
ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
if os.getcwd() not in sys.path:  # dotted names (--config.model.name=my_pkg.my_model) from here
  sys.path.append(os.getcwd())

EXIT_GATE_MISSED = 1
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_WORKDIR_IN_USE = 73  # EX_CANTCREAT
EXIT_STORAGE = 74  # EX_IOERR
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again
# A failed write that is the disk's or the folder's fault, not a bug: one line, EXIT_STORAGE.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)


def fail(message: str, status: int = EXIT_USER_ERROR):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def exit_now(message: str, status: int):
  """``fail`` for a run that may have library threads left (orbax's of a failed write wait
  forever; TF's may crash at shutdown): the line, flushed, then exit without joining them.
  Everything the run keeps was flushed by its own cleanup before the error reached here."""
  print(f"error: {message}", file=sys.stderr)
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  os._exit(status)


def stop_before_start(signum, frame):
  """SIGTERM/SIGINT while the flags are parsed, before anything is written."""
  fail(f"stopped by {signal.Signals(signum).name} during start-up, before anything was "
       f"written; rerun the same command", EXIT_PREEMPTED)


def available_configs() -> list[str]:
  """The names ``--config`` takes: ``configs/NAME.py`` and ``configs/studies/NAME.py``."""
  names = []
  for folder in ("", "studies"):
    directory = os.path.join(ROOT, "configs", folder)
    names += [f"{folder}/{f[:-3]}" if folder else f[:-3] for f in sorted(os.listdir(directory))
              if f.endswith(".py") and f not in ("__init__.py", "common.py")]
  return names


def config_path(name: str) -> str:
  return os.path.join(ROOT, "configs", *f"{name}.py".split("/"))


def description(path: str) -> str:
  """The first line of a config module's docstring (its command and result) and, when a
  later line gives it, its offline run, read without importing it."""
  import ast
  import re
  try:
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
  except (OSError, SyntaxError, ValueError):
    doc = ""
  lines = [line.strip() for line in doc.splitlines() if line.strip()]
  first = lines[0] if lines else "(no docstring)"
  offline = next((line for line in lines[1:] if "offline" in line and "launch.py" in line
                  and "offline" not in first), None)
  shown = [first] + ([f"offline: {offline.split('launch.py ', 1)[1]}"] if offline else [])
  return "\n    ".join(re.sub(r"\s{2,}#", "  #", line) for line in shown)  # aligned comments


def print_configs() -> None:
  names = available_configs()
  width = max(len(n) for n in names)
  print("Configs (--config=NAME[:ARG] runs configs/NAME.py's get_config(ARG); or a .py path):")
  for name in names:
    print(f"  {name:<{width}}  {description(config_path(name))}")
  print("python launch.py --config=NAME --dry_run lists a config's fields (--config.FIELD=VALUE).")


def field_help(path: str) -> dict[str, str]:
  """``{field: text}`` from the end-of-line comments of the statements in ``path`` that set
  ``config.FIELD = ...`` (the first such comment per field)."""
  import ast
  import io
  import tokenize
  try:
    with open(path) as f:
      source = f.read()
    tree = ast.parse(source)
    comments = {}  # line -> an end-of-line comment (code before it on its line)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
      if token.type == tokenize.COMMENT and token.line[:token.start[1]].strip():
        comments[token.start[0]] = token.string.lstrip("#").strip()
  except (OSError, SyntaxError, ValueError, tokenize.TokenError):
    return {}

  def field(target) -> str | None:  # config.a.b -> "a.b"
    parts = []
    while isinstance(target, ast.Attribute):
      parts.append(target.attr)
      target = target.value
    if isinstance(target, ast.Name) and target.id == "config" and parts:
      return ".".join(reversed(parts))
    return None

  helps = {}
  for node in ast.walk(tree):
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      comment = next((comments[line] for line in range(node.lineno, node.end_lineno + 1)
                      if line in comments), None)
      for name in filter(None, map(field, targets)):
        if comment and name not in helps:
          helps[name] = comment
  return helps


def describe_fields(config, path: str | None) -> list[str]:
  """``field = value  # help`` per field; the help is the end-of-line comment where the
  config file (or configs/common.py, for configs built on its defaults) sets the field."""
  helps = {} if "study" in config else field_help(os.path.join(ROOT, "configs", "common.py"))
  if path:
    helps.update(field_help(path))
  from research.cli.overrides import config_fields
  rows = [(f"{name} = {value!r}", helps.get(name, "")) for name, value in config_fields(config)]
  width = min(max((len(text) for text, _ in rows), default=0), 48)
  return [f"{text:<{width}}  # {text_help}" if text_help else text for text, text_help in rows]


def resolve_config_flag(argv: list[str]) -> tuple[list[str], str | None, str | None]:
  """Rewrites ``--config=NAME[:ARG]`` to the config file's path; returns argv, a run name and
  the file's path (both None without ``--config``)."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      index, value = i, arg[len("--config="):]
      break
    if arg == "--config" and i + 1 < len(argv):
      index, value = i, argv.pop(i + 1)
      break
  else:
    return argv, None, None
  name, _, config_arg = value.partition(":")
  path = name if name.endswith(".py") else config_path(name)
  if not os.path.isfile(path):
    fail(f"unknown config {name!r}; available: {', '.join(available_configs())}, "
         f"or a path to a .py file (--list_configs describes them)")
  argv[index] = f"--config={path}" + (f":{config_arg}" if config_arg else "")
  run_name = os.path.splitext(os.path.basename(path))[0] + (f"_{config_arg}" if config_arg else "")
  return argv, run_name, path


def flag_value(argv: list[str], name: str) -> str | None:
  """The last ``--name=VALUE`` (or ``--name VALUE``) in ``argv``, read before absl parses it."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == "--":
      break
    if arg.startswith(f"--{name}="):
      value = arg[len(name) + 3:]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def workdir_config(workdir: str):
  """The config a run recorded in ``workdir`` (config.json); one error line if none."""
  from research import errors
  from research.train import workdir as workdir_lib
  try:
    return workdir_lib.read_config(workdir)
  except errors.UserError as e:
    fail(str(e))
  except (OSError, ValueError) as e:  # unreadable, or not JSON
    fail(f"{os.path.join(workdir, workdir_lib.CONFIG_FILE)} cannot be read: {one_line(e)}")


class QuietLibraries:
  """Keeps the libraries' INFO chatter (jax's backend probes, orbax, TFDS, clu) out of the
  run's log: INFO lines come from this repository's code alone, warnings from anywhere."""
  OWN = tuple(os.path.join(ROOT, name) for name in ("research", "configs", "launch.py"))
  NOISE = (("/tensorflow_datasets/", "has no dataset_info.json"),)  # while it prepares one

  def filter(self, record) -> bool:
    if any(path in record.pathname and text in record.getMessage() for path, text in self.NOISE):
      return False
    own = record.pathname.startswith(self.OWN)
    if not own and record.exc_info:  # e.g. orbax's threads of a failed write: the run's own
      record.exc_info = record.exc_text = None  # error line says what failed, once
    return record.levelno > 20 or own


class PlainInfo:
  """absl's formatter for warnings and errors (level, time, file); INFO lines, the run's
  own, as their bare message."""

  def __init__(self, formatter):
    self._formatter = formatter

  def format(self, record) -> str:
    return record.getMessage() if record.levelno == 20 else self._formatter.format(record)


def quiet_noise(tfds_bars: bool = False) -> None:
  """The run's console: INFO lines from this repository only; no backend probe warnings
  (``Unable to initialize backend 'tpu'``); TFDS progress bars only on a terminal (unless
  ``tfds_bars``: a server, which imports no TFDS). Runs before JAX starts its backend (or
  joins a multi-process job)."""
  import logging as std_logging
  from absl import logging
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.ERROR)
  handler = logging.get_absl_handler()
  handler.addFilter(QuietLibraries())
  handler.setFormatter(PlainInfo(handler.python_handler.formatter or std_logging.Formatter()))
  logging.set_verbosity(logging.INFO)
  if not (tfds_bars or sys.stdout.isatty() and sys.stderr.isatty()):  # bars in files: \r, [A
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()


@contextlib.contextmanager
def stdout_to_devnull():
  """File descriptor 1 (Python's and the C++ libraries' stdout) to /dev/null; stderr stays."""
  sys.stdout.flush()
  saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 1)
  os.close(devnull)
  try:
    yield
  finally:
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)


def quiet_processes() -> bool:
  """In a multi-process run, opens the collectives with stdout muted (Gloo's ``[Gloo] Rank
  0 is connected ...`` lines) and keeps only process 0's INFO lines. Returns whether this
  is process 0, the one that prints the run's lines."""
  import jax
  from absl import logging
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    with stdout_to_devnull():
      multihost_utils.sync_global_devices("launch")
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
    return False
  return True


def short(value) -> str:
  """A field's value in the config summary: strings bare, the rest as Python writes them."""
  return value if isinstance(value, str) else repr(value)


def fields_text(config, skip: tuple[str, ...] = ("name",), width: int = 96) -> str:
  """``key=value, ...`` of a ConfigDict's fields (nested ones left out), cut at ``width``."""
  import ml_collections
  text = ", ".join(f"{k}={short(v)}" for k, v in config.items()
                   if k not in skip and not isinstance(v, ml_collections.ConfigDict))
  return text if len(text) <= width else text[:width - 3].rsplit(", ", 1)[0] + ", ..."


def eval_text(name: str, spec) -> str:
  """One evaluation for the config summary: ``val (metrics on val, every 100 steps)``."""
  data = spec.get("data", "?")
  if not isinstance(data, str):  # a ConfigDict of config.data fields: another dataset
    data = ":".join(str(data[k]) for k in ("name", "split") if k in data) or "?"
  when = [f"every {spec.every_steps} steps"] if spec.get("every_steps", 0) else []
  if spec.get("final", True):
    when.append("final")
  return f"{name} ({spec.get('type', '?')} on {data}, {' + '.join(when) or 'off'})"


def named(head: str, config, width: int = 118) -> str:
  """``head`` and a ConfigDict's ``name``, then its other fields, within ``width``."""
  head = f"{head}{config.get('name', '?')}: "
  return head + fields_text(config, width=width - len(head))


def wrapped(head: str, items: list[str], width: int = 100) -> list[str]:
  """``head`` and ``items`` joined by commas, on as many lines as ``width`` needs (items
  are not split; later lines indented under the first item)."""
  lines = [head]
  for i, item in enumerate(items):
    text = item + ("," if i < len(items) - 1 else "")
    if len(lines[-1]) > len(head) and len(lines[-1]) + 1 + len(text) > width:
      lines.append(" " * len(head) + text)
    else:
      lines[-1] += ("" if len(lines[-1]) == len(head) else " ") + text
  return lines


def config_summary(config, workdir: str) -> list[str]:
  """A few lines on what the run is; the full config is WORKDIR/config.json."""
  config_file = os.path.join(os.path.abspath(workdir), "config.json")
  if "study" in config:
    return [f"  study      {config.study}: {fields_text(config, skip=('study',))}"]
  data, opt = config.data, config.optimizer
  splits = ", ".join(f"{k[:-len('_split')]} {data[k]}" for k in ("train_split", "val_split",
                                                                 "test_split") if data.get(k))
  optimizer = [opt.get("name", "?"), f"lr {opt.get('learning_rate', '?')}",
               f"{opt.get('schedule', 'constant')} schedule"]
  optimizer += [f"{k.replace('_', ' ')} {opt[k]}" for k in (
      "warmup_steps", "weight_decay", "grad_clip_norm") if opt.get(k)]
  if opt.get("accumulate_steps", 1) > 1:
    optimizer.append(f"accumulate {opt.accumulate_steps} steps")
  length = (f"{config.total_steps} steps" if config.get("total_steps", -1) > 0
            else f"{config.get('num_epochs', '?'):g} epochs")
  evals = sorted(config.get("evals", {}).items(), key=lambda e: not e[1].get("every_steps", 0))
  evals = [eval_text(name, spec) for name, spec in evals if spec.get("type")] or ["none"]
  return [
      f"  data       {data.get('name', '?')} ({splits})",
      named("  model      ", config.model),
      named("  task       ", config.task),
      f"  optimizer  {', '.join(optimizer)}",
      f"  training   batch {config.batch_size}, {length}; log every {config.log_every_steps}, "
      f"checkpoint every {config.checkpoint_every_steps} steps",
      f"  gate       {config.get('gate') or 'none'}",
      *wrapped("  evals      ", evals),
      f"  (every field: {config_file}; --dry_run lists them with their help)",
  ]


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


def one_line_flag_errors(parse, *args, **kwargs):
  """``parse(*args, **kwargs)`` where every bad flag or config override is one line, exit 2."""
  from absl import flags
  try:
    return parse(*args, **kwargs)
  except flags.Error as e:
    fail(one_line(e))
  except (AttributeError, KeyError) as e:  # ml_collections: no such field
    fail(f"bad {override_kind()} override: no field {one_line(e)}")
  except (TypeError, ValueError) as e:  # ml_collections: a value of the wrong type
    fail(f"bad {override_kind()} override: {one_line(e)}")


def override_kind() -> str:
  return "--serve" if flag_value(sys.argv, "mode") == "serve" else "--config"


def check_overrides(argv: list[str], path: str | None, recorded) -> None:
  """The config file loads and each --config.FIELD=VALUE fits a field (research/cli/overrides.py):
  one line, exit 2, before absl applies them."""
  from research import errors
  from research.cli import overrides
  try:
    config = recorded
    if config is None:
      config = overrides.load(path, flag_value(argv, "config").partition(":")[2] or None)
    overrides.check(argv[1:], config)
  except errors.UserError as e:
    fail(str(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing where every bad flag or config override is one line, exit 2."""
  from absl import flags
  return one_line_flag_errors(flags.FLAGS, argv)


def apply_xla_flags(config) -> None:
  """Puts ``config.xla_flags`` in front of the XLA_FLAGS environment variable (flags the
  user set there come later, so they win). XLA reads it when JAX starts its backend, so
  this must run before the first computation."""
  extra = config.get("xla_flags", "")
  if extra:
    os.environ["XLA_FLAGS"] = " ".join(f for f in (extra, os.environ.get("XLA_FLAGS", "")) if f)


def exit_status(error: Exception) -> int:
  from research import errors
  if isinstance(error, (errors.Preempted, errors.Interrupted)):
    return EXIT_PREEMPTED
  if isinstance(error, errors.WorkdirInUse):
    return EXIT_WORKDIR_IN_USE
  if isinstance(error, errors.StorageError):
    return EXIT_STORAGE
  if isinstance(error, errors.NonFiniteError):
    return EXIT_DIVERGED
  return EXIT_USER_ERROR


def interruption_in(error: BaseException):
  """The errors.Interrupted that a signal raised while a C extension module initialised,
  which Python reports as that module's ImportError (the Interrupted chained to it); None
  for any other error."""
  from research import errors
  while error is not None:
    if isinstance(error, errors.Interrupted):
      return error
    error = error.__cause__ or error.__context__
  return None


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull")
NEEDS_A_CONFIG = ("--config is required (or, for --mode=eval or sample, the --workdir of a trained "
                  "run: its config.json); one of: {}, or a path to a .py file; --list_configs "
                  "describes them")


def print_help(full: bool, config, path: str | None, name: str | None) -> None:
  from absl import app
  app.usage(shorthelp=not full, writeto_stdout=True)
  if config is None:
    print("\npython launch.py --config=NAME --help (or --dry_run) also lists NAME's "
          "--config.FIELD fields; --list_configs lists the configs.")
    return
  print(f"\n--config.FIELD=VALUE overrides any field of {name}:")
  for line in describe_fields(config, path):
    print(f"  {line}")


def dry_run(config, path: str | None, name: str, workdir: str) -> None:
  """Prints the resolved config's fields and validates it: nothing is trained or written."""
  from research import errors
  print(f"config {name}:")
  for line in describe_fields(config, path):
    print(line)
  if "study" in config:
    print(f"dry run: a study (not validated here; each of its runs is when it starts); "
          f"nothing was run or written (workdir: {os.path.abspath(workdir)})")
    return
  apply_xla_flags(config)
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # JAX's INFO lines on backends it did not find
  from research.train import validation
  try:
    validation.validate(config, None)
  except errors.UserError as e:
    fail(str(e), exit_status(e))
  print(f"dry run: the config is valid; nothing was trained or written "
        f"(workdir: {os.path.abspath(workdir)})")


def main() -> None:
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, stop_before_start)
  args = sys.argv[1:]
  help_flags = [a for a in args if a in HELP_FLAGS]
  argv, run_name, path = resolve_config_flag([sys.argv[0], *(a for a in args
                                                              if a not in HELP_FLAGS)])
  recorded = None  # --mode=eval|sample without --config: the workdir's config.json
  workdir = flag_value(argv, "workdir")
  if path is None and flag_value(argv, "mode") in ("eval", "sample", "export") and workdir:
    recorded = workdir_config(workdir)
    run_name = os.path.join(workdir, "config.json")
  elif path is None and any(a.startswith("--config.") for a in argv[1:]) and not help_flags:
    fail(NEEDS_A_CONFIG.format(", ".join(available_configs())))
  if path is not None or recorded is not None:
    check_overrides(argv, path, recorded)

  from absl import app, flags
  from ml_collections import config_flags

  if recorded is None:
    config_flags.DEFINE_config_file("config", None, "Experiment config: NAME[:ARG] or a path "
                                    "(--list_configs lists them).", lock_config=True)
  else:
    # Its --config.FIELD overrides are applied here, not when absl parses.
    one_line_flag_errors(config_flags.DEFINE_config_dict, "config", recorded,
                         "The workdir's recorded config.", lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", os.path.join("workdirs", run_name) if path else None,
                      "Where checkpoints, metrics and images go (default workdirs/CONFIG[_ARG]); "
                      "rerunning resumes. --mode=eval and sample read its config.json when "
                      "--config is not given.")
  flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "export", "serve"],
                    "train (resuming from the workdir's checkpoints), eval: the newest "
                    "checkpoint's validation and test metrics (for VAEs the test NLL), "
                    "sample: --num_samples images from the newest checkpoint "
                    "(generative models), written to WORKDIR/samples, export: the newest "
                    "checkpoint as a served model in --export_dir (research/serving), or "
                    "serve: --export_dir over HTTP (research/serving/server.py); none of "
                    "them trains.")
  flags.DEFINE_integer("num_samples", 64, "Images that --mode=sample draws.")
  flags.DEFINE_string("export_dir", None, "Where --mode=export writes (default WORKDIR/export); "
                      "what --mode=serve serves (several: comma-separated).")
  serve_options = define_serve_flags(argv) if flag_value(argv, "mode") == "serve" else None
  flags.DEFINE_bool("list_configs", False,
                    "List every config (configs/*.py, configs/studies/*.py) with the first line "
                    "of its docstring (its command and result), and exit.")
  flags.DEFINE_bool("allow_config_changes", False,
                    "Continue the run in --workdir with a config that differs from the one it "
                    "recorded (e.g. more epochs); the changes are appended to "
                    "WORKDIR/config_history.jsonl. Without it such a rerun is refused.")
  flags.DEFINE_bool("dry_run", False,
                    "Print the resolved config's fields (field = value  # help) and validate it, "
                    "then exit: nothing is trained or written.")
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

    FLAGS = flags.FLAGS
    if FLAGS.list_configs:
      print_configs()
      return
    if serve_options is not None and not help_flags:
      serve(FLAGS, serve_options.value)
      return
    if help_flags:
      print_help("--helpfull" in help_flags, FLAGS.config, path, run_name)
      return
    if FLAGS.config is None:
      fail(NEEDS_A_CONFIG.format(", ".join(available_configs())))
    config, workdir = FLAGS.config, FLAGS.workdir
    if FLAGS.dry_run:
      dry_run(config, path, run_name, workdir)
      return

    from research.core import distributed, preemption
    apply_xla_flags(config)
    from research.train import validation
    try:
      validation.check_xla_flags(config)  # XLA would end the process when JAX starts
    except errors.UserError as e:
      fail(str(e))
    quiet_noise()
    distributed.initialize(distributed.Cluster(
        FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id))
    main_process = quiet_processes()  # the others print only their devices and errors
    if main_process:
      print(f"config {run_name}:", *config_summary(config, workdir), sep="\n", flush=True)
    print(distributed.describe(), flush=True)
    if main_process:
      print(f"workdir: {os.path.abspath(workdir)}", flush=True)
    preemption.interrupt_on_signals()  # until here nothing is written: stop_before_start
    try:
      if "study" in config:  # a program of runs (research/studies)
        if FLAGS.mode != "train":
          raise errors.ConfigError(f"--mode={FLAGS.mode} is for a single run; a study trains")
        from research.studies import base as studies
        results = studies.run_study(config, workdir)
      else:
        results = run_one(config, workdir, FLAGS.mode, FLAGS.num_samples,
                          FLAGS.allow_config_changes, FLAGS.export_dir)
    except errors.UserError as e:
      exit_now(str(e), exit_status(e))
    except ImportError as e:
      interrupted = interruption_in(e)
      if interrupted is None:
        raise
      exit_now(str(interrupted), EXIT_PREEMPTED)
    except OSError as e:
      if e.errno not in STORAGE_ERRNOS:
        raise
      exit_now(str(errors.storage_error("writing", e.filename or workdir, e)), EXIT_STORAGE)
    if main_process:
      print("results: " + ", ".join(f"{k}={v:.5g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                    for k, v in sorted(results.items())), flush=True)
    if results.get("gate_passed") == 0.0:
      fail(f"gate missed: {config.gate} does not hold", EXIT_GATE_MISSED)

  app.run(run, argv=argv, flags_parser=parse_flags)


def define_serve_flags(argv: list[str]):
  """--mode=serve's flags; its options as --serve.FIELD (research/serving/server.py Options)."""
  from absl import flags
  from ml_collections import config_flags
  from research.serving import server
  check_serve_options(argv, [f.name for f in dataclasses.fields(server.Options)])
  flags.DEFINE_string("monitor_dir", None, "--mode=serve: a VAE export trained on the same data, "
                      "served too, whose -ELBO of every input is a drift test.")
  flags.DEFINE_string("host", "127.0.0.1", "--mode=serve: the address to listen on "
                      "(0.0.0.0: every interface).")
  flags.DEFINE_integer("port", server.DEFAULT_PORT, "--mode=serve: the port.")
  flags.DEFINE_string("model_name", None, "--mode=serve: the name in /v1/models/NAME "
                      "(default the export's config name; several: comma-separated).")
  return one_line_flag_errors(
      config_flags.DEFINE_config_dataclass, "serve", server.Options(),
      "--mode=serve options: batching (max_batch_size, batch_sizes, batch_timeout_ms, "
      "batching), limits (max_request_bytes, max_instances) and the drift monitor "
      "(drift_window, drift_stride, drift_alpha, monitor), as --serve.FIELD=VALUE.",
      sys_argv=argv)


def check_serve_options(argv: list[str], names: list[str]) -> None:
  """Each --serve.NAME names an option: one line with the closest names otherwise."""
  import difflib
  for arg in argv[1:]:
    if arg.startswith("--serve."):
      name = arg[len("--serve."):].partition("=")[0]
      if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        fail(f"--serve.{name}: no such serving option{hint} (they are {', '.join(names)})")


def serve(FLAGS, options) -> None:
  from research.serving import runtime, server
  if not FLAGS.export_dir:
    fail("--mode=serve needs --export_dir=DIR: a folder written by --mode=export")
  quiet_noise(tfds_bars=True)
  # uvicorn handles both signals while it serves and then re-raises them: default handlers.
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  directories = FLAGS.export_dir.split(",")
  names = FLAGS.model_name.split(",") if FLAGS.model_name else None
  if names is not None and len(names) != len(directories):
    fail(f"--model_name has {len(names)} names for {len(directories)} export directories")
  try:
    server.serve(directories, FLAGS.monitor_dir, FLAGS.host, FLAGS.port, options, names)
  except (runtime.ExportError, ValueError, OSError) as e:
    fail(one_line(e))


def run_one(config, workdir: str, mode: str, num_samples: int,
            allow_config_changes: bool = False, export_dir: str | None = None) -> dict[str, float]:
  """One run in ``workdir``: trained (resuming), evaluated, sampled from or exported."""
  from research import errors
  from research.train import validation
  if mode != "train":  # checked first: validating the workdir would create it
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(directory):
      raise errors.UserError(f"no checkpoint in {directory}: train first, or pass the "
                             f"--workdir of a trained run")
  validation.validate(config, workdir)  # before the heavy imports: bad configs fail fast
  from research.core import preemption
  from research.train import loop, modes
  if mode != "train":
    preemption.set_phase(f"--mode={mode}")
  if mode == "eval":
    return modes.evaluate_checkpoint(config, workdir)
  if mode == "sample":
    return modes.sample_checkpoint(config, workdir, num_samples)
  if mode == "export":
    from research.serving import export
    return export.export(workdir, export_dir, config=config)
  return loop.train_and_evaluate(config, workdir, allow_config_changes=allow_config_changes,
                                config_name=flag_value(sys.argv, "config"))  # as given


if __name__ == "__main__":
  main()
