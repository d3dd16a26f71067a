"""Runs survive kills and signals, stop on divergence, and skip damaged checkpoints."""
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research import errors
from research.core import writers
from research.train import loop
from tests.conftest import ROOT, error_lines, load_config, run_launcher, stderr_summary

EXIT_DIVERGED, EXIT_PREEMPTED = 3, 75
# Warm up from 0 to an absurd learning rate: the first steps are fine, then it diverges.
DIVERGING = ("--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e12",
             "--config.optimizer.warmup_steps=100")


def launcher_args(workdir, data_dir, *extra):
  return ["--config=vae:digits", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.total_steps=300", "--config.log_every_steps=10",
          "--config.eval_every_steps=100", "--config.checkpoint_every_steps=50", *extra]


def in_process_config(data_dir, **overrides):
  """The config ``launcher_args`` gives, for runs in this process."""
  return load_config("vae", data_dir=data_dir, total_steps=300, log_every_steps=10,
                     eval_every_steps=100, checkpoint_every_steps=50, **overrides)


def checkpoint_steps(workdir) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def restore(workdir, step):
  return ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "default"))


def assert_same_state(workdir_a, workdir_b, step):
  a, b = restore(workdir_a, step), restore(workdir_b, step)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def start_and_signal(args, signum, once_checkpointed_at: int):
  """Starts the launcher and sends ``signum`` once a checkpoint of that step exists."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  workdir = args[1].split("=", 1)[1]
  deadline = time.time() + 240
  while once_checkpointed_at not in checkpoint_steps(workdir):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signum)
  out, err = proc.communicate(timeout=240)
  return proc.returncode, out, err


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """The workdir of an uninterrupted 300-step run, for the others to match (read only)."""
  workdir = tmp_path_factory.mktemp("straight")
  loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  return workdir


def copy_of(workdir, tmp_path):
  shutil.copytree(workdir, tmp_path / "copy")
  return tmp_path / "copy"


def test_sigkill_then_rerun_equals_uninterrupted(straight, data_dir, tmp_path):
  killed = tmp_path / "killed"
  returncode, _, _ = start_and_signal(launcher_args(killed, data_dir), signal.SIGKILL, 50)
  assert returncode == -signal.SIGKILL
  assert checkpoint_steps(killed)[-1] < 300
  loop.train_and_evaluate(in_process_config(data_dir), str(killed))  # the rerun resumes
  assert_same_state(straight, killed, 300)


def stop_with(signum, workdir, data_dir) -> int:
  """Signals a run once it has checkpointed; checks the stop; returns its last step."""
  returncode, _, err = start_and_signal(launcher_args(workdir, data_dir), signum, 50)
  assert returncode == EXIT_PREEMPTED, err[-3000:]
  assert "Traceback" not in err
  messages = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(messages) == 1 and f"stopped by {signum.name} after step" in messages[0]
  stopped_at = int(messages[0].split("after step ")[1].split(";")[0])
  assert checkpoint_steps(workdir)[-1] == stopped_at
  assert [r["step"] for r in writers.read_metrics(workdir) if "train/neg_elbo" in r][-1] == stopped_at
  return stopped_at


def test_sigint_checkpoints_and_exits_75(data_dir, tmp_path):
  stop_with(signal.SIGINT, tmp_path / "run", data_dir)


def test_sigterm_checkpoints_exits_75_and_resumes_exactly(straight, data_dir, tmp_path, caplog):
  workdir = tmp_path / "run"
  stopped_at = stop_with(signal.SIGTERM, workdir, data_dir)
  with caplog.at_level(logging.INFO):
    loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  assert f"Resumed from the checkpoint at step {stopped_at}" in caplog.text
  assert_same_state(straight, workdir, 300)


def test_second_signal_exits_at_once():
  script = ("import os, signal, time\n"
            "from research.core import preemption\n"
            "with preemption.SignalWatcher() as watcher:\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  print('first:', watcher.signal_name, flush=True)\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  time.sleep(5)\n"
            "  print('still running')\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 128 + signal.SIGTERM
  assert proc.stdout.splitlines() == ["first: SIGTERM"]


def test_no_loading_path_unpickles():
  for root, _, files in os.walk(os.path.join(ROOT, "research")):
    for name in files:
      if name.endswith(".py"):
        source = open(os.path.join(root, name)).read()
        assert "pickle" not in source and "allow_pickle" not in source, name


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = run_launcher(*launcher_args(workdir, data_dir, *DIVERGING,
                                     "--config.checkpoint_every_steps=2",
                                     "--config.log_every_steps=2"))
  assert proc.returncode == EXIT_DIVERGED, stderr_summary(proc.stderr)
  messages = error_lines(proc)
  assert len(messages) == 1 and "training diverged:" in messages[0] and "is not finite at step" in messages[0]
  assert "Traceback" not in proc.stderr
  bad_step = int(messages[0].split("at step ")[1].split(";")[0])
  saved = checkpoint_steps(workdir)
  assert saved and saved[-1] < bad_step
  assert f"(step {saved[-1]})" in messages[0]
  state = restore(workdir, saved[-1])
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))


def test_skip_nonfinite_updates_survives_bad_steps(data_dir, tmp_path):
  # The same divergence, but non-finite updates are skipped: parameters stay finite
  # until too many come in a row, then the guard on the parameters stops the run
  # (the launcher maps NonFiniteError to exit status 3, as the test above shows).
  config = in_process_config(data_dir, **{
      "optimizer.name": "sgd", "optimizer.learning_rate": 1e12, "optimizer.warmup_steps": 100,
      "optimizer.skip_nonfinite": True, "optimizer.max_consecutive_nonfinite": 3})
  with pytest.raises(errors.NonFiniteError, match="params is not finite at step"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))


def test_damaged_newest_checkpoint_falls_back_to_the_previous(straight, data_dir, tmp_path,
                                                               caplog):
  damaged = copy_of(straight, tmp_path)
  os.remove(os.path.join(damaged, "results.json"))  # killed before its final evaluation
  assert checkpoint_steps(damaged) == [200, 250, 300]
  for root, _, files in os.walk(os.path.join(damaged, "checkpoints", "300")):
    for name in files:  # truncate every file of the newest checkpoint
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(root, name)) // 2)

  with caplog.at_level(logging.INFO):
    loop.train_and_evaluate(in_process_config(data_dir), str(damaged))
  assert "The checkpoint at step 300 cannot be read" in caplog.text
  assert "Resumed from the checkpoint at step 250" in caplog.text
  assert os.path.isdir(os.path.join(damaged, "checkpoints_unreadable", "300"))
  assert_same_state(straight, damaged, 300)


def test_checkpoint_of_another_model_is_a_clear_error(straight, data_dir, tmp_path):
  config = in_process_config(data_dir, **{"model.latent_dim": 3})
  with pytest.raises(errors.UserError, match="does not fit this config") as error:
    loop.train_and_evaluate(config, str(copy_of(straight, tmp_path)), allow_config_changes=True)
  assert "params/posterior/kernel" in str(error.value) and "\n" not in str(error.value)
