"""Speed of the importance-sampled NLL against its own matmul-only limit.

    TFDS_DATA_DIR=DIR python benchmarks/nll_speed.py --config=vae:iwae_arch \\
        --config.evals.nll.num_samples=5000 [--images=10000]

Builds the experiment as ``launch.py`` does and runs its ``nll`` evaluation's own path
(the ``likelihood`` evaluator's jitted prediction, ``evaluators.base.gather`` over the
test batches) on the first ``--images`` test images, from freshly initialised parameters
(the time does not depend on their values). Reports:

- seconds for those images, as the evaluation spends them (the prediction's compilation
  included), and the estimate for the whole split (``--images=0``: all of it, measured);
  the compilation's seconds alone beside them;
- the matmul-only limit: the same dots with the same shapes (``benchmarks/matmul_only.py``),
  timed alone, before and after, and the fraction of it the real evaluation reaches;
- the products' FLOP/s beside a 2048x2048 float32 matmul's.

Prints one JSON line and, unless ``--results=''``, appends a row to the "IS NLL speed" table
of benchmarks/RESULTS.md.
"""
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import throughput  # noqa: E402  (sets the process start time)

TABLE_HEADER = "| date | command | images x k | seconds (whole split) |"


def nll_evaluation(exp):
  """The experiment's importance-sampled NLL evaluation."""
  from research.evaluators import likelihood
  found = [e for e in exp.evaluations if isinstance(e.evaluator, likelihood.Evaluator)]
  if not found:
    raise SystemExit("the config has no enabled `likelihood` evaluation (evals.nll)")
  return found[0]


def timed_gather(evaluator, state, batches) -> float:
  import jax
  from research.evaluators import base
  start = time.perf_counter()
  out = base.gather(evaluator.predict, state, batches, evaluator.context.rng)
  jax.block_until_ready(out)
  return time.perf_counter() - start


def measure(exp, images: int) -> dict:
  from benchmarks import matmul_only
  evaluation = nll_evaluation(exp)
  evaluator = evaluation.evaluator
  all_batches = evaluator.batches
  batch_size = int(all_batches[0]["mask"].shape[0])
  split_images = sum(int(b["mask"].sum()) for b in all_batches)
  count = len(all_batches) if images <= 0 else min(len(all_batches),
                                                  math.ceil(images / batch_size))
  batches = all_batches[:count]
  compile_start = time.perf_counter()
  evaluator.predict.lower(exp.state, batches[0], evaluator.context.rng).compile()
  compile_s = time.perf_counter() - compile_start

  def limit():
    return matmul_only.matmul_only(evaluator.predict, exp.state, batches[0],
                                   evaluator.context.rng)

  before = limit()
  seconds = timed_gather(evaluator, exp.state, batches)
  after = limit()
  limit_s = statistics.median([before.seconds, after.seconds]) * count
  measured = sum(int(b["mask"].sum()) for b in batches)
  matmul = throughput.matmul_flops_per_sec("float32")
  return {
      "images": measured, "num_samples": evaluator.option("num_samples"),
      "chunk": evaluator.option("chunk"), "batch_size": batch_size,
      "seconds": round(seconds, 2), "compile_s": round(compile_s, 2),
      "split_images": split_images,
      "split_seconds_estimate": round(seconds * split_images / measured, 1),
      "matmul_only_s": round(limit_s, 2),
      "matmul_only_fraction": round(limit_s / seconds, 3),
      "products_gflops": round(before.flops * count / limit_s / 1e9, 1),
      "matmul_2048_gflops": round(statistics.median(matmul) / 1e9, 1),
      "load": throughput.load_average(), "machine": throughput.machine(),
      "versions": throughput.versions(),
  }


def append_row(path: str, result: dict, command: str) -> None:
  r = result
  row = (f"| {datetime.date.today()} | `{command}` | {r['images']:,} x {r['num_samples']:,} "
         f"(chunk {r['chunk']}, batch {r['batch_size']}) | {r['seconds']:.1f} "
         f"({r['split_seconds_estimate'] / 60:.1f} min) | {r['matmul_only_s']:.1f} s: "
         f"{r['matmul_only_fraction']:.0%} | {r['products_gflops']:.0f} of "
         f"{r['matmul_2048_gflops']:.0f} GFLOP/s | {r['load']} | {r['machine']}; "
         f"{r['versions']} |")
  throughput.insert_row(path, TABLE_HEADER, row, "IS NLL speed")


def main(argv: list[str]) -> None:
  import launch
  argv, run_name, _ = launch.resolve_config_flag(argv)
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Experiment config: NAME[:ARG] or a path.")
  flags.DEFINE_integer("images", 1000, "Test images to time (0: the whole split).")
  flags.DEFINE_string("results", os.path.join(ROOT, "benchmarks", "RESULTS.md"),
                      "Markdown file whose IS NLL speed table gets a row; '' for none.")
  launch.parse_flags(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from research.train import experiment
  config = flags.FLAGS.config
  launch.apply_xla_flags(config)
  exp = experiment.build(config, tempfile.mkdtemp(prefix=f"nll_speed_{run_name}_"))
  try:
    result = {"config": run_name, **measure(exp, flags.FLAGS.images)}
  finally:
    exp.close()
  print(json.dumps(result), flush=True)
  if flags.FLAGS.results:
    data_dir = os.environ.get("TFDS_DATA_DIR", "")
    command = ((f"TFDS_DATA_DIR={data_dir} " if data_dir else "")
               + "python benchmarks/nll_speed.py "
               + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    append_row(flags.FLAGS.results, result, command)


if __name__ == "__main__":
  main(sys.argv)
