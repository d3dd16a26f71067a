"""Training throughput of any config, through the project's own train step.

    TFDS_DATA_DIR=DIR python benchmarks/throughput.py --config=cnn [--config.x=...]

Builds the experiment exactly as ``launch.py`` does (``research.train.experiment.build``:
real data, the jitted train step of ``research/core/step.py``, ``steps_per_call`` and all)
and feeds it the same calls as ``loop.train`` (the run's feed, ``research/data/feeds.py``),
then reports:

- examples/s: median (min-max) of ``--windows`` timed windows of about
  ``--window_secs`` each, after a warm-up; with vmapped replicas
  (``--config.replicas.seeds=...``), of all replicas together;
- compile: seconds to trace, lower and compile the train step (``jit.lower().compile()``,
  for a call of one step);
- start-up: seconds from process start to the first train call (imports, data, init),
  and to the end of that call (its own compilation, if JAX did not reuse the one above);
- peak RSS of the process;
- roofline: the FLOPs per example of one train step from XLA's cost analysis, times
  examples/s, over the FLOP/s of a large float32 matmul on the same devices (measured
  here, before and after the windows); where the run's matmuls take bfloat16 operands
  (``precision`` or ``matmul_precision`` bfloat16), also over a bfloat16 matmul's.

Prints one JSON line and, unless
``--results=''``, appends a row with the command, machine, versions, load and date to
the speed log of benchmarks/RESULTS.md.
"""
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPEED_LOG_HEADER = "| date | command | examples/s median (min-max) |"


def process_start_time() -> float:
  """Wall-clock time at which this process started (Linux /proc; else now)."""
  try:
    with open("/proc/self/stat") as f:
      start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return time.time()


PROCESS_START = process_start_time()


def matmul_flops_per_sec(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> list[float]:
  """FLOP/s of an ``n x n`` matmul with ``dtype`` operands and float32 results, rows split
  over all devices, per repeat."""
  import jax
  import jax.numpy as jnp
  from research.core import sharding
  mesh = sharding.make_mesh()
  a = jax.device_put(jnp.ones((n, n), dtype), sharding.batch_sharding(mesh))
  b = jax.device_put(jnp.ones((n, n), dtype), sharding.replicated(mesh))
  matmul = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  matmul(a, b).block_until_ready()
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    rates.append(2 * n ** 3 / (time.perf_counter() - start))
  return rates


def matmul_dtypes(config) -> tuple[str, ...]:
  """Operand dtypes whose matmul FLOP/s are rooflines for the run: float32 always, and
  bfloat16 where the run's matmuls take bfloat16 operands."""
  bfloat16 = "bfloat16" in (config.precision, config.get("matmul_precision", "default"))
  return ("float32", "bfloat16") if bfloat16 else ("float32",)


def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis["flops"])


def unsplit_train_step(exp):
  """``exp``'s train step on whole batches: XLA's cost analysis counts a loop body once,
  so a microbatched step (a scan over its parts) is costed through this one."""
  from research.train import experiment
  config = exp.config.copy_and_resolve_references()
  config.microbatch_size = 0
  return experiment.make_train_step(config, exp.task, exp.adaptor, exp.feed, exp.mesh,
                                    exp.num_steps)


def examples_per_step(exp) -> int:
  """Training examples one step consumes: the batch, times the replicas when the config
  trains vmapped replicas (``replicas.seeds``), each on its own batch."""
  return exp.config.batch_size * exp.adaptor.count()


def step_flops_and_compile_seconds(exp) -> tuple[float, float]:
  """XLA's FLOPs per example of one train step (over all devices), and the seconds to
  trace, lower and compile ``exp.train_step`` for a call of one step (with
  ``steps_per_call > 1``: a scan of length one, whose cost is one step's)."""
  _, inputs = next(exp.feed.calls(0, 1))
  start = time.perf_counter()
  compiled = exp.train_step.lower(exp.state, *inputs).compile()
  seconds = time.perf_counter() - start
  if exp.config.microbatch_size:
    compiled = unsplit_train_step(exp).lower(exp.state, *inputs).compile()
  # The cost analysis of a step partitioned over the mesh is that of one partition.
  partitions = exp.mesh.size
  return flops_of(compiled) * partitions / examples_per_step(exp), seconds


def timed_windows(exp, state, calls, window_secs: float, windows: int):
  """Examples/s of ``windows`` windows of whole calls, each about ``window_secs`` long."""
  import jax
  from research.core import dispatch
  batch = examples_per_step(exp)

  def run(num_calls):
    nonlocal state
    steps, metrics, run_ahead = 0, None, dispatch.RunAhead()
    start = time.perf_counter()
    for _ in range(num_calls):  # as loop.train feeds them
      _, inputs = next(calls)
      state, new = exp.train_step(state, *inputs)
      metrics = dispatch.accumulate(metrics, new)
      run_ahead(new)
      steps += exp.feed.steps_in(inputs)
    jax.block_until_ready((state, metrics))
    return steps * batch, time.perf_counter() - start

  run(2)  # warm-up (the first call compiled already)
  examples, seconds = run(3)
  calls_per_window = max(1, round(3 * window_secs / seconds))
  rates = []
  for _ in range(windows):
    examples, seconds = run(calls_per_window)
    rates.append(examples / seconds)
  return rates, calls_per_window


def load_average() -> str:
  try:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
  except OSError:
    return "?"


def versions() -> str:
  import flax
  import jax
  import jaxlib
  import optax
  return (f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, "
          f"optax {optax.__version__}, Python {platform.python_version()}")


def cpu_model() -> str:
  """The CPU's model name (Linux /proc/cpuinfo), else the architecture."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.machine()


def machine() -> str:
  import jax
  return (f"{cpu_model()}, {os.cpu_count()} cores, {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}")


def append_row(path: str, result: dict, command: str) -> None:
  """Inserts a row at the end of the speed log table of ``path``."""
  r = result
  row = (f"| {datetime.date.today()} | `{command}` | {r['examples_per_s_median']:,.0f} "
         f"({r['examples_per_s_min']:,.0f}-{r['examples_per_s_max']:,.0f}) | "
         f"{r['roofline_fraction']:.1%} of {r['matmul_gflops']:.0f} GFLOP/s"
         + (f", {r['bfloat16_roofline_fraction']:.1%} of {r['bfloat16_matmul_gflops']:.0f} "
            f"GFLOP/s bfloat16" if "bfloat16_matmul_gflops" in r else "") + " "
         f"({r['step_mflops_per_example']:.1f} MFLOP/ex) | {r['compile_s']:.2f} s | "
         f"{r['startup_s']:.1f} s / {r['first_step_done_s']:.1f} s | "
         f"{r['peak_rss_mb'] / 1024:.2f} GB | {r['load']} | {r['machine']}; {r['versions']} |")
  insert_row(path, SPEED_LOG_HEADER, row, "speed log")


def insert_row(path: str, header: str, row: str, table: str) -> None:
  """Appends ``row`` to the Markdown table of ``path`` whose header line starts with
  ``header`` (the benchmarks' logs in RESULTS.md); a missing table stops the script."""
  lines = open(path).read().splitlines()
  at = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
  if at is None:
    raise SystemExit(f"no {table} table (header starting {header!r}) in {path}")
  end = at
  while end + 1 < len(lines) and lines[end + 1].startswith("|"):
    end += 1
  lines.insert(end + 1, row)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def mfu_fields(spec: str, config, result: dict) -> dict:
  """MFU of the run (``--peak_flops``: 'auto' or TFLOP/s per device; benchmarks/peak_flops.py):
  XLA's FLOPs per example x examples/s over the devices' peak dense FLOP/s."""
  import jax
  from benchmarks import peak_flops
  basis = peak_flops.basis(config.precision, config.get("matmul_precision", "default"),
                           jax.default_backend())
  peak, source = peak_flops.peak_tflops(spec, jax.devices()[0].device_kind, basis)
  if peak is None:
    return {"mfu": None, "mfu_basis": source}
  achieved = result["examples_per_s_median"] * result["step_mflops_per_example"] * 1e6
  return {"mfu": round(achieved / (peak * 1e12 * jax.device_count()), 5), "peak_tflops": peak,
          "mfu_basis": source}


def main(argv: list[str]) -> None:
  import launch
  argv, run_name, _ = launch.resolve_config_flag(argv)
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Experiment config: NAME[:ARG] or a path.")
  flags.DEFINE_integer("windows", 7, "Timed windows.")
  flags.DEFINE_float("window_secs", 2.0, "Approximate length of each window.")
  flags.DEFINE_string("results", os.path.join(ROOT, "benchmarks", "RESULTS.md"),
                      "Markdown file whose speed log gets a row; '' for none.")
  flags.DEFINE_string("peak_flops", "", "MFU against a peak: 'auto' (by device kind, "
                      "benchmarks/peak_flops.py), TFLOP/s per device, or '' for none.")
  launch.parse_flags(argv)
  if flags.FLAGS.peak_flops:
    from benchmarks import peak_flops
    peak_flops.check_spec(flags.FLAGS.peak_flops)  # before the run, not after it
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  import jax
  from research.train import experiment
  config = flags.FLAGS.config
  launch.apply_xla_flags(config)
  workdir = tempfile.mkdtemp(prefix=f"throughput_{run_name}_")
  exp = experiment.build(config, workdir)
  try:
    calls = exp.feed.calls(0, 10 ** 9)
    _, inputs = next(calls)
    startup = time.time() - PROCESS_START  # ready for the first train call
    flops_per_example, compile_s = step_flops_and_compile_seconds(exp)
    start = time.perf_counter()
    state, metrics = exp.train_step(exp.state, *inputs)
    jax.block_until_ready((state, metrics))
    first_done = startup + time.perf_counter() - start  # as if that call came first
    dtypes = matmul_dtypes(config)
    matmul = {dtype: matmul_flops_per_sec(dtype) for dtype in dtypes}
    rates, calls_per_window = timed_windows(exp, state, calls, flags.FLAGS.window_secs,
                                            flags.FLAGS.windows)
    for dtype in dtypes:
      matmul[dtype] += matmul_flops_per_sec(dtype)
  finally:
    exp.close()
  median = statistics.median(rates)
  peaks = {dtype: statistics.median(rates_) for dtype, rates_ in matmul.items()}
  result = {
      "config": run_name, "batch_size": config.batch_size, "replicas": exp.adaptor.count(),
      "steps_per_call": config.steps_per_call,
      "precision": config.precision, "examples_per_s_median": round(median, 1),
      "examples_per_s_min": round(min(rates), 1), "examples_per_s_max": round(max(rates), 1),
      "windows": len(rates), "calls_per_window": calls_per_window,
      "compile_s": round(compile_s, 3), "startup_s": round(startup, 2),
      "first_step_done_s": round(first_done, 2),
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "step_mflops_per_example": round(flops_per_example / 1e6, 3),
      "matmul_gflops": round(peaks["float32"] / 1e9, 1),
      "roofline_fraction": round(median * flops_per_example / peaks["float32"], 4),
      **{f"{dtype}_matmul_gflops": round(peak / 1e9, 1) for dtype, peak in peaks.items()
         if dtype != "float32"},
      **{f"{dtype}_roofline_fraction": round(median * flops_per_example / peak, 4)
         for dtype, peak in peaks.items() if dtype != "float32"},
      "load": load_average(), "machine": machine(), "versions": versions(),
  }
  if flags.FLAGS.peak_flops:
    result.update(mfu_fields(flags.FLAGS.peak_flops, config, result))
  print(json.dumps(result), flush=True)
  if flags.FLAGS.results:
    data_dir = os.environ.get("TFDS_DATA_DIR", "")
    command = (f"TFDS_DATA_DIR={data_dir} " if data_dir else "") + "python benchmarks/throughput.py " + \
        " ".join(shlex.quote(a) for a in sys.argv[1:])
    append_row(flags.FLAGS.results, result, command)


if __name__ == "__main__":
  main(sys.argv)
