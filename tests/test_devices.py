"""1 device and 8 (simulated) devices give the same run to float tolerance."""
import numpy as np
import pytest

from research.core import writers
from tests.conftest import run_launcher

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def run(name, devices_env, data_dir, workdir):
  proc = run_launcher(f"--config={name}:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=12",
                      "--config.log_every_steps=1", "--config.eval_every_steps=6",
                      "--config.checkpoint_every_steps=12", env=devices_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, writers.read_metrics(workdir)


@pytest.mark.parametrize("name, metric", [
    ("cnn", "loss"), ("vae", "neg_elbo"), ("cnn_strong", "loss"),  # cnn_strong: batch norm
    ("iwae", "neg_bound")])  # k samples per image, and the test NLL over sharded batches
def test_one_and_eight_devices_agree(name, metric, data_dir, tmp_path):
  out1, one = run(name, {"XLA_FLAGS": ""}, data_dir, tmp_path / "one")
  out8, eight = run(name, EIGHT_DEVICES, data_dir, tmp_path / "eight")
  assert "devices: 1 x" in out1 and "devices: 8 x" in out8

  def series(records, key):
    return np.array([r[key] for r in records if key in r])

  for key in [f"train/{metric}", f"val/{metric}", f"test/{metric}"]:
    a, b = series(one, key), series(eight, key)
    assert len(a) == len(b) > 0, key
    np.testing.assert_allclose(a, b, rtol=2e-5, err_msg=key)
  assert len(series(one, f"train/{metric}")) == 12
