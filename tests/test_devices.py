"""1 device and 8 (simulated) devices give the same run to float tolerance.

The 8 devices are one subprocess (XLA reads the device count once, at start-up) that
trains every config below in turn while this process trains them on its one device, so
the suite pays one process start-up, not two per config, and the two halves overlap.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from research.core import writers
from research.data import pipeline
from tests.conftest import ROOT, stderr_summary

# case: (config, the metric compared, config overrides). Every model family on the
# bundled digits: cnn_strong and resnet carry batch norm; vae and iwae draw k samples per
# image and compute the test NLL over sharded batches (compared too); the microbatched
# cases split each sharded batch into parts (with batch norm: each part's statistics);
# bfloat16 matmuls round the same operands on any number of devices. resnet's SGD at lr
# 0.1 on 8x8 images amplifies float rounding (the order of the cross-device batch-norm
# sums) ~3x per step, so it compares at a learning rate where 12 steps stay within
# tolerance.
CASES = {"cnn": ("cnn", "loss", {}), "cnn_strong": ("cnn_strong", "loss", {}),
         "cnn_microbatched": ("cnn", "loss", {"microbatch_size": 32}),
         "cnn_strong_microbatched": ("cnn_strong", "loss", {"microbatch_size": 64}),
         "cnn_bfloat16_matmuls": ("cnn", "loss", {"matmul_precision": "bfloat16",
                                                  "microbatch_size": 32}),
         "resnet": ("resnet", "loss", {"optimizer.learning_rate": 0.003}),
         "kernel_svm": ("kernel_svm", "loss", {}),
         "rnn": ("rnn", "loss", {}), "vit": ("vit", "loss", {}),
         "vae": ("vae", "neg_elbo", {}), "iwae": ("iwae", "neg_bound", {})}

TRAIN_EACH = """
import json, sys
from tests.test_devices import train_each

data_dir, root, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(train_each(data_dir, root, cases))
"""


def train_each(data_dir: str, root: str, cases: dict) -> str:
  """Trains each case's config in ``ROOT/CASE``; returns ``devices=N``."""
  import jax

  from research.train import loop
  from tests.conftest import load_config
  for case, (name, extra) in cases.items():
    config = load_config(name, data_dir=data_dir, total_steps=12, log_every_steps=1,
                         eval_every_steps=6, checkpoint_every_steps=12, **extra)
    # Only the evaluations whose scalars are compared (val/*, test/*): image grids and
    # reports cost minutes on 8 simulated devices and compare nothing.
    config.evals = {k: v for k, v in config.evals.items() if k in ("val", "test", "nll")}
    if "nll" in config.evals:
      config.evals.nll.update(num_samples=10, chunk=5)
    loop.train_and_evaluate(config, f"{root}/{case}")
  return f"devices={jax.device_count()}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """{device count: (its ``devices=N``, the folder holding one workdir per config)}: 8 in a
  subprocess, 1 in this process (when it has one device, else in a subprocess too) as the
  subprocess runs."""
  import jax
  cases = {case: (name, extra) for case, (name, _, extra) in CASES.items()}

  def start(devices: int):
    root = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    # Files, not pipes: nothing reads a pipe while this process trains.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_EACH, data_dir, str(root),
                             json.dumps(cases)], cwd=ROOT, env=env, stdout=out, stderr=err,
                            text=True)
    return proc, root, out, err

  def finish(proc, root, out, err):
    try:
      proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
      proc.kill()
      raise
    out.seek(0)
    err.seek(0)
    assert proc.returncode == 0, stderr_summary(err.read())
    return out.read().split()[-1], root

  pipeline.get_builder("digits", data_dir, download=False)  # before both halves read it
  eight = start(8)
  try:
    if jax.device_count() == 1:
      root = tmp_path_factory.mktemp("devices")
      one = train_each(data_dir, str(root), cases), root
    else:
      one = finish(*start(1))
  except BaseException:
    eight[0].kill()
    raise
  return {1: one, 8: finish(*eight)}


@pytest.mark.parametrize("name", CASES)
def test_one_and_eight_devices_agree(name, runs):
  metric = CASES[name][1]
  (devices1, root1), (devices8, root8) = runs[1], runs[8]
  assert (devices1, devices8) == ("devices=1", "devices=8")
  one, eight = writers.read_metrics(root1 / name), writers.read_metrics(root8 / name)

  def series(records, key):
    return np.array([r[key] for r in records if key in r])

  nll = ["test/nll"] if any("test/nll" in r for r in one) else []
  for key in [f"train/{metric}", f"val/{metric}", f"test/{metric}"] + nll:
    a, b = series(one, key), series(eight, key)
    assert len(a) == len(b) > 0, key
    np.testing.assert_allclose(a, b, rtol=2e-5, err_msg=key)
  assert len(series(one, f"train/{metric}")) == 12
