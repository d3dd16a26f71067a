"""The benchmark scripts run (tiny settings, offline) and the matmul-only limit counts the
products a function runs: scans times their length, the costliest branch of a cond."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import matmul_only, nll_speed, replicas, throughput
from tests.conftest import ROOT, stderr_summary

A, B = jnp.ones((64, 32)), jnp.ones((32, 16))
DOT_FLOPS = 2 * 64 * 32 * 16


def test_products_count_scans_by_their_length_and_the_costliest_branch():
  def fn(a, b):
    scanned = jax.lax.scan(lambda c, _: (c + jnp.tanh(a @ b).sum(), None), 0.0, None, length=5)
    branch = jax.lax.cond(a[0, 0] > 0, lambda: (a @ b).sum() + (a @ b * 2).sum(),
                          lambda: (a @ b).sum())
    return scanned[0] + branch

  counts = matmul_only.products_of(jax.make_jaxpr(jax.jit(fn))(A, B))
  assert sum(counts.values()) == 5 + 2
  limit = matmul_only.matmul_only(fn, A, B, min_seconds=0.001)
  assert limit.flops == 7 * DOT_FLOPS and limit.evaluations == 7 and limit.products == 1
  assert limit.seconds > 0


def test_products_of_a_gradient_and_a_convolution_have_their_flops():
  grad_fn = jax.grad(lambda a, b: jnp.sum(jnp.tanh(a @ b)))
  counts = matmul_only.products_of(jax.make_jaxpr(grad_fn)(A, B))
  # the forward product and the input gradient g b^T, each 2 M N K
  assert sum(p.flops * c for p, c in counts.items()) == 2 * DOT_FLOPS
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  conv = jax.make_jaxpr(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))(x, w)
  (product,) = matmul_only.products_of(conv)
  assert product.flops == 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)


def test_a_while_loop_is_refused():
  square = jnp.ones((32, 32))

  def fn(a):
    return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ square, c[1] + 1), (a, 0))[0]

  with pytest.raises(ValueError, match="while loop"):
    matmul_only.products_of(jax.make_jaxpr(fn)(A))


def results_file(tmp_path, header: str):
  path = tmp_path / "RESULTS.md"
  path.write_text(f"# log\n\n{header} x |\n| --- |\n\nafter\n")
  return path


def run_benchmark(script: str, data_dir: str, *args: str) -> dict:
  """The JSON line ``benchmarks/SCRIPT`` prints, run on the bundled digits."""
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", script), *args,
       f"--config.data.data_dir={data_dir}", "--config.data.cache_dir="],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_nll_benchmark_reports_its_matmul_only_fraction(tmp_path, data_dir):
  path = results_file(tmp_path, nll_speed.TABLE_HEADER)
  result = run_benchmark("nll_speed.py", data_dir, "--config=vae:digits",
                         "--config.evals.nll.num_samples=20", "--config.evals.nll.chunk=10",
                         "--images=200", f"--results={path}")
  assert result["images"] == 200 and result["split_images"] == 360
  assert 0 < result["matmul_only_s"] and 0 < result["matmul_only_fraction"]
  np.testing.assert_allclose(result["split_seconds_estimate"], result["seconds"] * 360 / 200,
                             rtol=0.02, atol=0.1)  # the estimate rounded to tenths
  lines = path.read_text().splitlines()
  assert lines[4].startswith("| ") and "200 x 20" in lines[4] and lines[-1] == "after"


def test_the_throughput_benchmark_runs(tmp_path, data_dir):
  path = results_file(tmp_path, throughput.SPEED_LOG_HEADER)
  result = run_benchmark("throughput.py", data_dir, "--config=logreg:digits", "--windows=2",
                         "--window_secs=0.05", f"--results={path}")
  assert result["examples_per_s_median"] > 0 and result["step_mflops_per_example"] > 0
  assert "logreg" in path.read_text().splitlines()[4]


def test_the_replicas_benchmark_runs_both_arms(tmp_path, data_dir):
  path = results_file(tmp_path, replicas.TABLE_HEADER)
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "replicas.py"), "--config=logreg:digits",
       "--replicas=2", "--steps=10", f"--results={path}", "--",
       f"--config.data.data_dir={data_dir}", "--config.data.cache_dir="],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["replicas_s"] > 0 and result["separate_s"] > 0
  assert result["replicas_examples_per_s"] == pytest.approx(
      2 * 10 * result["batch_size"] / result["replicas_s"], rel=0.01)
  assert "2 x 10" in path.read_text().splitlines()[4]
