"""The project's throughput beside the PyTorch yardstick, run alternately (A B A B ...).

    TFDS_DATA_DIR=DIR python benchmarks/ab_torch.py --model=cnn [--pairs=3] [-- --config.x=...]

A is ``benchmarks/throughput.py`` on the yardstick config (``cnn`` or
``vae_yardstick``), B is ``torch_reference.py --model=MODEL`` (from ``--reference``,
default ../shared/bench; needs ``pip install torch``), with ``--torch_bf16`` in PyTorch's
bfloat16 matmul mode. Each runs in a fresh process;
the machine's speed drifts within minutes, so each pair's ratio A/B is printed and
their median is the result. Arguments after ``--`` go to throughput.py (e.g. config
overrides). A row with every pair is appended to the A/B table of
benchmarks/RESULTS.md unless ``--results=''``.
"""
import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"cnn": "cnn", "vae": "vae_yardstick"}
AB_HEADER = "| date | command | pairs: project / torch examples/s (ratio) |"


def last_json(text: str) -> dict:
  return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


# Runs the reference script (argv[1], its flags after it) with PyTorch's float32 matmuls and
# convolutions on CPU (oneDNN) rounding their operands to bfloat16.
TORCH_BF16 = ("import runpy, sys, torch; torch.backends.mkldnn.matmul.fp32_precision = 'bf16'; "
              "torch.backends.mkldnn.conv.fp32_precision = 'bf16'; "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def run(command: list[str]) -> dict:
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    raise SystemExit(f"{shlex.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
  return last_json(proc.stdout)


def bfloat16_roofline(result: dict) -> str:
  """`` (N% of bfloat16's)`` where throughput.py measured a bfloat16 roofline too."""
  fraction = result.get("bfloat16_roofline_fraction")
  return "" if fraction is None else f" ({fraction:.1%} of bfloat16's)"


def insert_row(path: str, header: str, row: str) -> None:
  """Appends ``row`` to the Markdown table whose header line starts with ``header``."""
  lines = open(path).read().splitlines()
  at = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
  if at is None:
    raise SystemExit(f"no table with header {header!r} in {path}")
  while at + 1 < len(lines) and lines[at + 1].startswith("|"):
    at += 1
  lines.insert(at + 1, row)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=sorted(CONFIGS), default="cnn")
  parser.add_argument("--pairs", type=int, default=3)
  parser.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "bench",
                                                          "torch_reference.py"))
  parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
  parser.add_argument("--torch_bf16", action="store_true",
                      help="PyTorch with bfloat16 operands in its float32 matmuls and "
                           "convolutions too (torch.backends.mkldnn.{matmul,conv}."
                           "fp32_precision='bf16'): the like-for-like reference for "
                           "--config.matmul_precision=bfloat16")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  ours = [sys.executable, os.path.join(ROOT, "benchmarks", "throughput.py"),
          f"--config={CONFIGS[args.model]}", "--results=", *extra]
  torch = [sys.executable, args.reference, f"--model={args.model}"]
  if args.torch_bf16:
    torch = [sys.executable, "-c", TORCH_BF16] + torch[1:]
  pairs = []
  for i in range(args.pairs):
    a = run(ours)
    b = run(torch)
    ratio = a["examples_per_s_median"] / b["examples_per_s_median"]
    pairs.append((a, b, ratio))
    print(f"pair {i + 1}: project {a['examples_per_s_median']:,.0f} ex/s "
          f"({a['examples_per_s_min']:,.0f}-{a['examples_per_s_max']:,.0f}), torch "
          f"{b['examples_per_s_median']:,.0f} ex/s ({b['examples_per_s_min']:,.0f}-"
          f"{b['examples_per_s_max']:,.0f}), ratio {ratio:.2f}; project compile "
          f"{a['compile_s']:.2f} s, start-up {a['startup_s']:.1f} s, roofline "
          f"{a['roofline_fraction']:.1%}{bfloat16_roofline(a)}, RSS {a['peak_rss_mb']:.0f} MB; "
          f"load {a['load']}", flush=True)
  median = statistics.median(r for _, _, r in pairs)
  print(f"median ratio project/torch ({args.model}): {median:.2f}")
  if args.results:
    data_dir = os.environ.get("TFDS_DATA_DIR", "")
    command = (f"TFDS_DATA_DIR={data_dir} " if data_dir else "") + "python benchmarks/ab_torch.py " + \
        " ".join(shlex.quote(a) for a in sys.argv[1:])
    shown = "; ".join(f"{a['examples_per_s_median']:,.0f} / {b['examples_per_s_median']:,.0f} "
                      f"({r:.2f})" for a, b, r in pairs)
    row = (f"| {datetime.date.today()} | `{command}` | {shown} | **{median:.2f}** | "
           f"{pairs[0][0]['load']} | {pairs[0][0]['machine']}; {pairs[0][1]['framework']} |")
    insert_row(args.results, AB_HEADER, row)


if __name__ == "__main__":
  main()
