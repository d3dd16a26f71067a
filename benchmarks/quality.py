"""Trains a config on real data and records its final metrics and wall time.

    TFDS_DATA_DIR=DIR python benchmarks/quality.py --config=cnn [--config.x=...]

Runs ``launch.py`` with the given arguments in a fresh workdir, then prints one
Markdown row (config, key results, wall time from process start, peak RSS) and
appends it, with the command, machine and date, to benchmarks/RESULTS.md.
"""
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

from throughput import cpu_model  # benchmarks/ is this script's folder, so on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")


def machine() -> str:
  return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str]) -> int:
  args = [a for a in argv if not a.startswith("--workdir")]
  workdir = tempfile.mkdtemp(prefix="quality_")
  command = [sys.executable, os.path.join(ROOT, "launch.py"), *args, f"--workdir={workdir}"]
  start = time.perf_counter()
  proc = subprocess.run(command, cwd=ROOT)
  wall = time.perf_counter() - start
  peak_rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
  results_path = os.path.join(workdir, "results.json")
  if not os.path.exists(results_path):
    print(f"no results: launch.py exited with {proc.returncode}", file=sys.stderr)
    return proc.returncode or 1
  results = json.load(open(results_path))
  shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items()) if k.startswith("test/"))
  gate = ("" if not results.get("gate") else
          " (gate met)" if results.get("gate_passed") else " (gate MISSED)")
  data_dir = os.environ.get("TFDS_DATA_DIR", "")
  shell = (f"TFDS_DATA_DIR={data_dir} " if data_dir else "") + "python benchmarks/quality.py " + \
      " ".join(shlex.quote(a) for a in args)
  row = (f"| {datetime.date.today()} | `{shell}` | {shown}{gate} | {wall:.0f} s | "
         f"{peak_rss_gb:.2f} GB | {machine()} |")
  print(row)
  with open(RESULTS, "a") as f:
    f.write(row + "\n")
  return proc.returncode


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
