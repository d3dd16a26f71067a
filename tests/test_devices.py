"""1 device and 8 (simulated) devices give the same run to float tolerance.

Each device count is one subprocess (XLA reads the device count once, at start-up)
that trains every config below in turn, so the suite pays two process start-ups, not
two per config.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from research.core import writers
from tests.conftest import ROOT

# (config, the metric compared); cnn_strong has batch norm; iwae draws k samples per
# image and computes the test NLL over sharded batches.
CASES = [("cnn", "loss"), ("vae", "neg_elbo"), ("cnn_strong", "loss"), ("iwae", "neg_bound")]

TRAIN_EACH = """
import sys
import jax
from research.core import loop
from tests.conftest import load_config

data_dir, root, names = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in names:
  config = load_config(name, data_dir=data_dir, total_steps=12, log_every_steps=1,
                       eval_every_steps=6, checkpoint_every_steps=12)
  loop.train_and_evaluate(config, f"{root}/{name}")
print(f"devices={jax.device_count()}")
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """{device count: the folder holding one workdir per config}, trained in subprocesses."""
  def train_each(devices: int):
    root = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, "-c", TRAIN_EACH, data_dir, str(root),
                           *[name for name, _ in CASES]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()[-1], root

  return {devices: train_each(devices) for devices in (1, 8)}


@pytest.mark.parametrize("name, metric", CASES)
def test_one_and_eight_devices_agree(name, metric, runs):
  (devices1, root1), (devices8, root8) = runs[1], runs[8]
  assert (devices1, devices8) == ("devices=1", "devices=8")
  one, eight = writers.read_metrics(root1 / name), writers.read_metrics(root8 / name)

  def series(records, key):
    return np.array([r[key] for r in records if key in r])

  for key in [f"train/{metric}", f"val/{metric}", f"test/{metric}"]:
    a, b = series(one, key), series(eight, key)
    assert len(a) == len(b) > 0, key
    np.testing.assert_allclose(a, b, rtol=2e-5, err_msg=key)
  assert len(series(one, f"train/{metric}")) == 12
