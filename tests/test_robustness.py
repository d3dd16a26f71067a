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
from research.train import loop, restore as restore_lib
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


def start_launcher(args, **popen):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen)


def wait_for(proc, condition, timeout: float = 240) -> None:
  """Polls ``condition()`` while ``proc`` runs."""
  deadline = time.time() + timeout
  while not condition():
    assert proc.poll() is None, stderr_summary(proc.communicate()[1])
    assert time.time() < deadline
    time.sleep(0.02)


def start_and_signal(args, signum, once_checkpointed_at: int, before_signal=None):
  """Starts the launcher and sends ``signum`` once a checkpoint of that step exists
  (``before_signal(proc)`` runs then)."""
  proc = start_launcher(args)
  workdir = args[1].split("=", 1)[1]
  wait_for(proc, lambda: once_checkpointed_at in checkpoint_steps(workdir))
  if before_signal is not None:
    before_signal(proc)
  proc.send_signal(signum)
  out, err = proc.communicate(timeout=240)
  return proc.returncode, out, err


def assert_records_of_checkpoints(workdir) -> None:
  """Every checkpointed step's train metrics are on disk, and each step appears once."""
  steps = [r["step"] for r in writers.read_metrics(workdir)]
  assert steps == sorted(set(steps))
  logged = {r["step"] for r in writers.read_metrics(workdir) if "train/neg_elbo" in r}
  assert set(checkpoint_steps(workdir)) <= logged


def assert_one_error_line(err: str, *fragments: str) -> str:
  assert "Traceback" not in err, stderr_summary(err)
  messages = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(messages) == 1, stderr_summary(err)
  for fragment in fragments:
    assert fragment in messages[0], messages[0]
  return messages[0]


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """The workdir of an uninterrupted 300-step run, for the others to match (read only)."""
  workdir = tmp_path_factory.mktemp("straight")
  loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  return workdir


def copy_of(workdir, tmp_path):
  shutil.copytree(workdir, tmp_path / "copy")
  return tmp_path / "copy"


def test_live_workdir_is_refused_and_sigkill_then_rerun_equals_uninterrupted(straight, data_dir,
                                                                           tmp_path):
  killed = tmp_path / "killed"
  args = launcher_args(killed, data_dir)
  second = {}

  def start_a_second_run(proc):  # while the first holds the workdir (stopped, not dead)
    proc.send_signal(signal.SIGSTOP)
    second["records"] = open(killed / "metrics.jsonl").read()
    second["proc"] = run_launcher(*args)

  returncode, _, _ = start_and_signal(args, signal.SIGKILL, 50, start_a_second_run)
  assert returncode == -signal.SIGKILL
  assert second["proc"].returncode == 73
  assert_one_error_line(second["proc"].stderr, f"{killed} is in use by a live run (process ")
  assert open(killed / "metrics.jsonl").read() == second["records"]  # the refused run wrote none
  assert checkpoint_steps(killed)[-1] < 300
  assert_records_of_checkpoints(killed)
  loop.train_and_evaluate(in_process_config(data_dir), str(killed))  # the lock died with it
  assert_same_state(straight, killed, 300)
  assert_records_of_checkpoints(killed)
  assert [r["step"] for r in writers.read_metrics(killed)] == \
      [r["step"] for r in writers.read_metrics(straight)]


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


def rerun_after_fault_equals_uninterrupted(straight, data_dir, workdir) -> None:
  """A rerun resumes from what the faulty run left and ends as an uninterrupted run."""
  loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  assert_same_state(straight, workdir, 300)
  assert [r["step"] for r in writers.read_metrics(workdir)] == \
      [r["step"] for r in writers.read_metrics(straight)]


def test_failed_checkpoint_write_exits_74_at_once_and_resumes(straight, data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start_launcher(launcher_args(workdir, data_dir))
  wait_for(proc, lambda: 50 in checkpoint_steps(workdir))
  os.rename(workdir / "checkpoints", workdir / "moved")  # the folder vanishes mid-run
  (workdir / "checkpoints").write_text("")
  _, err = proc.communicate(timeout=120)  # orbax's threads of the failed write never end
  assert proc.returncode == 74, stderr_summary(err)
  assert_one_error_line(err, "writing a checkpoint to", str(workdir / "checkpoints"), "free there")
  os.remove(workdir / "checkpoints")
  os.rename(workdir / "moved", workdir / "checkpoints")
  assert_records_of_checkpoints(workdir)
  rerun_after_fault_equals_uninterrupted(straight, data_dir, workdir)


@pytest.fixture
def small_disk(tmp_path):
  """A 12 MB tmpfs (room for one checkpoint of the run, not two) and a function that grows
  it; None where mounting is not allowed."""
  mount = tmp_path / "disk"
  mount.mkdir()
  if shutil.which("mount") is None or subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
      capture_output=True).returncode != 0:
    yield None
    return
  yield mount, lambda: subprocess.run(["mount", "-o", "remount,size=256m", str(mount)],
                                      check=True)
  subprocess.run(["umount", "-l", str(mount)])


def test_full_disk_is_one_line_exit_74_and_resumes_once_there_is_room(straight, data_dir,
                                                                      tmp_path, small_disk,
                                                                      monkeypatch):
  if small_disk is None:  # no mounting here: the disk fills up after the first checkpoint
    workdir = tmp_path / "run"
    real = errors.free_bytes
    monkeypatch.setattr(errors, "free_bytes",
                        lambda path: 4096 if checkpoint_steps(workdir) else real(path))
    with pytest.raises(errors.StorageError) as error:
      loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
    line = str(error.value)
    monkeypatch.undo()
  else:
    mount, grow = small_disk
    workdir = mount / "run"
    proc = start_launcher(launcher_args(workdir, data_dir))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 74, stderr_summary(err)
    line = assert_one_error_line(err)
    grow()
  assert "a checkpoint of step 100 needs about 7.3 MB and " in line and "B free; free space" in line
  assert checkpoint_steps(workdir) == [50]  # intact: the second was refused before writing
  assert_records_of_checkpoints(workdir)
  rerun_after_fault_equals_uninterrupted(straight, data_dir, workdir)


def test_sigterm_during_start_up_is_one_line_exit_75(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start_launcher(launcher_args(workdir, data_dir))
  started = []

  def read_until_workdir_line():
    started.append(proc.stdout.readline())
    return started[-1].startswith("workdir:")

  wait_for(proc, read_until_workdir_line)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == EXIT_PREEMPTED, stderr_summary(err)
  assert_one_error_line(err, "stopped by SIGTERM during start-up", "rerun the same command")
  assert checkpoint_steps(workdir) == []


def test_sigint_during_the_final_evaluation_exits_75_and_the_rerun_finishes_it(straight, data_dir,
                                                                              tmp_path):
  workdir = tmp_path / "run"
  slow_final_nll = "--config.evals.nll.num_samples=1000"  # a window to signal in
  proc = start_launcher(launcher_args(workdir, data_dir, slow_final_nll))
  wait_for(proc, lambda: 300 in checkpoint_steps(workdir))
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == EXIT_PREEMPTED, stderr_summary(err)
  assert_one_error_line(err, "stopped by SIGINT during the final evaluation of step 300")
  assert not (workdir / "results.json").exists()
  assert_records_of_checkpoints(workdir)
  config = in_process_config(data_dir, **{"evals.nll.num_samples": 1000})
  results = loop.train_and_evaluate(config, str(workdir))
  assert results["step"] == 300 and np.isfinite(results["test/nll"])
  assert_same_state(straight, workdir, 300)
  assert [r["step"] for r in writers.read_metrics(workdir)] == \
      [r["step"] for r in writers.read_metrics(straight)]


def overwrite_middle_bytes(directory) -> None:
  """4 bytes in the middle of the checkpoint's largest array file: it still reads."""
  files = [os.path.join(root, f) for root, _, names in os.walk(directory) for f in names
           if os.sep + "d" + os.sep in os.path.join(root, f)]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.seek(os.path.getsize(largest) // 2)
    f.write(b"\xff\xff\x7f\x7f")


def test_corruption_that_reads_without_error_fails_its_checksum(straight, data_dir, tmp_path,
                                                                caplog):
  damaged = copy_of(straight, tmp_path)
  os.remove(os.path.join(damaged, "results.json"))
  overwrite_middle_bytes(os.path.join(damaged, "checkpoints", "300", "default"))
  with pytest.raises(AssertionError):  # the bytes changed, yet orbax restores them silently
    assert_same_state(straight, damaged, 300)
  with caplog.at_level(logging.INFO):
    loop.train_and_evaluate(in_process_config(data_dir), str(damaged))
  assert "The checkpoint at step 300 cannot be read (ValueError: the checksums of" in caplog.text
  assert "Resumed from the checkpoint at step 250" in caplog.text
  assert_same_state(straight, damaged, 300)


def test_non_finite_final_metrics_are_an_error():
  with pytest.raises(errors.NonFiniteError, match=r"step 7 is not finite: test/nll=nan, "
                     r"val/neg_elbo=inf; no results.json"):
    loop.check_finite({"val/neg_elbo": float("inf"), "test/nll": float("nan"),
                       "test/kl": 1.0}, 7, "/w")


def test_workdir_history_that_checkpoints_no_longer_hold_is_refused(straight, data_dir, tmp_path):
  workdir = copy_of(straight, tmp_path)
  os.remove(os.path.join(workdir, "results.json"))
  shutil.move(os.path.join(workdir, "checkpoints"), os.path.join(workdir, "checkpoints_unreadable"))
  with pytest.raises(errors.UserError, match=r"no readable checkpoint, and the unreadable ones of "
                     r"steps 200, 250, 300 are in .*checkpoints_unreadable; move that folder"):
    loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  shutil.rmtree(os.path.join(workdir, "checkpoints_unreadable"))
  with pytest.raises(errors.UserError, match=r"metrics.jsonl has records up to step 300 but .* "
                     r"has no checkpoint: they were deleted"):
    loop.train_and_evaluate(in_process_config(data_dir), str(workdir))
  assert not os.listdir(os.path.join(workdir, "checkpoints"))  # nothing started


def test_damaged_input_spec_is_one_line(straight, tmp_path):
  workdir = copy_of(straight, tmp_path)
  with open(os.path.join(workdir, "input_spec.json"), "w") as f:
    f.write('{"image": [[8, 8')
  with pytest.raises(errors.UserError, match=r"input_spec.json is damaged \(JSONDecodeError"):
    restore_lib.example_inputs(str(workdir))


def test_a_signal_inside_an_extension_modules_import_is_still_an_interruption():
  """The signal handler's Interrupted, raised while a C extension initialises (tensorstore
  under orbax, seen under load), reaches the launcher as that module's ImportError."""
  import launch
  from research import errors
  interrupted = errors.Interrupted("SIGTERM", "start-up")
  try:
    try:
      raise interrupted
    except errors.Interrupted as e:
      raise ImportError("initialization failed") from e
  except ImportError as error:
    assert launch.interruption_in(error) is interrupted
  assert launch.interruption_in(ImportError("No module named 'nothing'")) is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop
def test_a_signal_whose_interruption_python_dropped_still_stops_at_the_next_phase():
  """A SIGTERM handled inside a gc callback (JAX runs one at every collection): Python prints
  the handler's Interrupted as "Exception ignored" and goes on; the next phase boundary
  (set_phase, or the training loop's start) raises it again, naming the phase it hit."""
  import gc

  from research.core import preemption
  handlers = {s: signal.getsignal(s) for s in preemption.SIGNALS}
  preemption.set_phase("start-up (data, restore, compilation)")
  gc.callbacks.append(lambda *_: preemption._interrupt(signal.SIGTERM, None))
  try:
    gc.collect()  # the handler's exception raised in the callback, and dropped
  finally:
    gc.callbacks.pop()
    for s, handler in handlers.items():
      signal.signal(s, handler)
  with pytest.raises(errors.Interrupted, match="SIGTERM during start-up"):
    preemption.set_phase("the final evaluation")
  preemption.set_phase("start-up")  # raised once: nothing is pending now
