"""Two CPU processes joined by jax.distributed train exactly like one process with the
same global batch: each reads its own half of every batch, gradients are all-reduced."""
import json
import os
import subprocess
import sys

import numpy as np

from research.core import writers
from tests.conftest import ROOT, free_port, run_launcher, stderr_summary

RUN_FLAGS = ("--config=mlp:digits", "--config.total_steps=20", "--config.batch_size=64",
             "--config.log_every_steps=5", "--config.eval_every_steps=10",
             "--config.checkpoint_every_steps=10")


def launch_processes(num_processes: int, workdir: str, data_dir: str) -> list[subprocess.Popen]:
  address = f"localhost:{free_port()}"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": ""}
  return [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "launch.py"), *RUN_FLAGS, f"--workdir={workdir}",
       f"--config.data.data_dir={data_dir}", f"--coordinator_address={address}",
       f"--num_processes={num_processes}", f"--process_id={i}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(num_processes)]


def test_two_processes_equal_one(data_dir, tmp_path):
  single = run_launcher(*RUN_FLAGS, f"--workdir={tmp_path / 'single'}",
                        f"--config.data.data_dir={data_dir}", env={"XLA_FLAGS": ""})
  assert single.returncode == 0, stderr_summary(single.stderr)

  processes = launch_processes(2, str(tmp_path / "multi"), data_dir)
  outputs = [p.communicate(timeout=300) for p in processes]
  for p, (stdout, stderr) in zip(processes, outputs):
    assert p.returncode == 0, stderr_summary(stderr)
  assert "(2 process(es); process 0 holds 1)" in outputs[0][0]
  assert "(2 process(es); process 1 holds 1)" in outputs[1][0]

  expected, got = (writers.read_metrics(tmp_path / d) for d in ("single", "multi"))
  assert [r["step"] for r in got] == [r["step"] for r in expected]
  for key in ["train/loss", "train/accuracy", "val/loss", "test/loss", "test/accuracy"]:
    want = [r[key] for r in expected if key in r]
    assert want, key
    np.testing.assert_allclose([r[key] for r in got if key in r], want, rtol=2e-5, err_msg=key)
  assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["10", "20"]
  results = json.load(open(tmp_path / "multi" / "results.json"))
  assert results["test/accuracy"] == json.load(open(tmp_path / "single" / "results.json"))["test/accuracy"]
