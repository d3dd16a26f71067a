"""vmapped replicas against separate runs, one after the other, as a study trains its seeds.

    TFDS_DATA_DIR=DIR python benchmarks/replicas.py --config=vae_yardstick [--replicas=10] \\
        [--steps=500] [--pairs=1]

A: one ``launch.py`` process training ``--config.replicas.seeds=(0, ..., R-1)`` for
``--steps`` steps; B: R ``launch.py`` processes one after the other, seed i each, the same
steps. Evaluations are switched off in both (training throughput alone; a study's
evaluations cost the same either way), checkpoints are written as the config says. Each
arm's wall time runs from the first process start to the last exit, so B pays R start-ups
and compilations where A pays one; examples/s counts every replica's examples. With
``--pairs`` > 1 the arms alternate (A B A B) and the ratio's median is the result.

Prints one JSON line and, unless ``--results=''``, appends a row to the replicas table of
benchmarks/RESULTS.md. Arguments after ``--`` go to every launch.py run (config overrides).
"""
import argparse
import datetime
import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import throughput  # noqa: E402

TABLE_HEADER = "| date | command | replicas x steps | A: replicas, s (ex/s) |"


def config_of(name: str):
  module, _, arg = name.partition(":")
  return importlib.import_module(f"configs.{module}").get_config(arg or None)


def no_evaluations(name: str) -> list[str]:
  """Overrides that switch off every evaluation of config ``name`` (an empty type)."""
  return [f"--config.evals.{eval_name}.type=" for eval_name in config_of(name).get("evals", {})]


def launch(config: str, workdir: str, overrides: list[str]) -> float:
  """Seconds from start to exit of one training run (it must succeed)."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
                         f"--workdir={workdir}", *overrides], capture_output=True, text=True,
                        cwd=ROOT)
  if proc.returncode:
    raise SystemExit(f"launch.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return time.perf_counter() - start


def run_pair(args, extra: list[str], scratch: str, index: int) -> tuple[float, float]:
  common = [f"--config.total_steps={args.steps}", *no_evaluations(args.config), *extra]
  seeds = "(" + ",".join(str(i) for i in range(args.replicas)) + ",)"
  replicas_s = launch(args.config, os.path.join(scratch, f"replicas_{index}"),
                      [*common, f"--config.replicas.seeds={seeds}"])
  separate_s = sum(launch(args.config, os.path.join(scratch, f"seed_{index}_{seed}"),
                          [*common, f"--config.seed={seed}"])
                   for seed in range(args.replicas))
  return replicas_s, separate_s


def append_row(path: str, result: dict, command: str) -> None:
  r = result
  row = (f"| {datetime.date.today()} | `{command}` | {r['replicas']} x {r['steps']} | "
         f"{r['replicas_s']:.1f} ({r['replicas_examples_per_s']:,.0f}) | "
         f"{r['separate_s']:.1f} ({r['separate_examples_per_s']:,.0f}) | "
         f"{r['speedup_median']:.2f}x ({', '.join(f'{x:.2f}' for x in r['speedups'])}) | "
         f"{r['load']} | {r['machine']} |")
  throughput.insert_row(path, TABLE_HEADER, row, "replicas")


def main(argv: list[str]) -> None:
  own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
      else (argv, [])
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--replicas", type=int, default=10)
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--pairs", type=int, default=1)
  parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
  args = parser.parse_args(own)
  pairs = []
  with tempfile.TemporaryDirectory(prefix="replicas_bench_") as scratch:
    for index in range(args.pairs):
      pairs.append(run_pair(args, extra, scratch, index))
  batch = config_of(args.config).batch_size
  examples = args.replicas * args.steps * batch
  replicas_s = statistics.median(a for a, _ in pairs)
  separate_s = statistics.median(b for _, b in pairs)
  speedups = [b / a for a, b in pairs]
  result = {
      "config": args.config, "replicas": args.replicas, "steps": args.steps,
      "batch_size": batch, "replicas_s": round(replicas_s, 1), "separate_s": round(separate_s, 1),
      "replicas_examples_per_s": round(examples / replicas_s, 1),
      "separate_examples_per_s": round(examples / separate_s, 1),
      "speedups": [round(x, 3) for x in speedups],
      "speedup_median": round(statistics.median(speedups), 3),
      "load": throughput.load_average(), "machine": throughput.machine(),
  }
  print(json.dumps(result), flush=True)
  if args.results:
    data_dir = os.environ.get("TFDS_DATA_DIR", "")
    command = ((f"TFDS_DATA_DIR={data_dir} " if data_dir else "") + "python benchmarks/replicas.py "
               + " ".join(shlex.quote(a) for a in argv))
    append_row(args.results, result, command)


if __name__ == "__main__":
  main(sys.argv[1:])
