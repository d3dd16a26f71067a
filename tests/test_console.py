"""The run's console: a short config summary, one line per log step and per evaluation
(research/core/writers.py ``Progress``), no third-party noise; and the ETA's arithmetic."""
import io
import re

import numpy as np
import pytest

import launch
from configs import cnn
from research.core import writers
from tests.conftest import run_launcher, stderr_summary

HMS = r"\d+:\d\d:\d\d"
STEP_LINE = re.compile(rf"^step +(\d+)/40 \(\d+%\)  loss \S+  accuracy \S+  .*[\d,]+ ex/s  "
                       rf"elapsed {HMS}  ETA {HMS}$")


def test_launcher_console_is_short_and_readable(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = run_launcher("--config=cnn:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=40",
                      "--config.log_every_steps=10")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  console = proc.stdout + proc.stderr
  lines = console.splitlines()
  assert len(lines) < 40, console
  for noise in ("!!python/tuple", "Setting work unit notes", "libtpu", "steps_per_sec",
                "uptime", "\x1b[A"):
    assert noise not in console, (noise, console)

  out = proc.stdout.splitlines()
  assert out[0] == "config cnn_digits:"
  assert f"workdir: {workdir}" in out and any(line.startswith("devices: ") for line in out)
  assert any(str(workdir / "config.json") in line for line in out)  # where the full config is
  steps = [int(m.group(1)) for m in map(STEP_LINE.match, out) if m]
  assert steps == [10, 20, 30, 40], console  # exactly one line per log step
  assert len([line for line in lines if line.startswith("step ")]) == 5, console  # + the eval
  assert re.search(r"^step 40  val: loss \S+  accuracy \S+.*\(eval \d+\.\d s\)$", proc.stdout,
                   re.M), console
  assert out[-1].startswith("results: ") and "test/accuracy=" in out[-1]

  records = writers.read_metrics(str(workdir))  # the writers' records are unchanged
  train = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train] == [10, 20, 30, 40]
  assert all(r["train/examples_per_sec"] > 0 for r in train)
  assert [r["step"] for r in records if "steps_per_sec" in r] == [10, 20, 30, 40]
  assert [r["step"] for r in records if "uptime" in r] == [10, 20, 30, 40]


def test_config_summary_is_a_few_lines():
  lines = launch.config_summary(cnn.get_config("digits"), "/tmp/wd")
  assert len(lines) <= 10 and all(len(line) < 120 for line in lines), lines
  text = "\n".join(lines)
  for part in ("digits (train train[:90%], val train[90%:], test test)",
               "cnn: ", "conv_features=(32, 64)", "classification: ", "loss=softmax",
               "adam, lr 0.001, cosine schedule", "batch 128, 30 epochs",
               "val (metrics on val, every 100 steps + final)", "test (metrics on test, final)",
               "report (classification_report on test, final)", "/tmp/wd/config.json"):
    assert part in text, (part, text)
  assert "!!python" not in text


@pytest.mark.parametrize("seconds, text", [
    (0, "0:00:00"), (0.4, "0:00:00"), (41.2, "0:00:41"), (59.6, "0:01:00"), (535.4, "0:08:55"),
    (3599.6, "1:00:00"), (45_296, "12:34:56"), (100 * 3600, "100:00:00"),
    (None, "?"), (float("inf"), "?"), (float("nan"), "?"), (-1, "?")])
def test_format_duration_is_h_mm_ss(seconds, text):
  assert writers.format_duration(seconds) == text


def test_step_and_eval_lines():
  assert writers.step_line(300, 4210, "loss 0.2314  accuracy 0.9375", 1820.4, 41.2, 535.4) == (
      "step  300/4210 (7%)  loss 0.2314  accuracy 0.9375  1,820 ex/s  elapsed 0:00:41  "
      "ETA 0:08:55")
  assert writers.step_line(10, 40, "loss 1", None, 3, None) == (
      "step 10/40 (25%)  loss 1  ? ex/s  elapsed 0:00:03  ETA ?")
  assert writers.format_metrics({"accuracy": 0.93751, "loss": 0.23141, "a": 1, "b": 2, "c": 3}) == (
      "loss 0.2314  accuracy 0.9375  a 1  b 2")
  assert writers.eval_line(1000, {"val": {"val/loss": 0.05, "val/accuracy": 0.985},
                                  "images": {}}, 3.21) == (
      "step 1000  val: loss 0.05  accuracy 0.985  |  images  (eval 3.2 s)")
  replicas = {"val": {"replica_0/val/loss": 0.5, "replica_1/val/loss": 0.25}}
  assert writers.eval_line(5, replicas, 1) == "step 5  val: loss 0.25..0.5  (eval 1.0 s)"
  assert writers.format_value(np.array([0.3, 0.1])) == "0.1..0.3"


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


def progress(clock, out, **kwargs) -> writers.Progress:
  kwargs = {"eval_every": (), "enabled": True, "live": False, **kwargs}
  return writers.Progress(100, 0, 32, kwargs.pop("eval_every"), out=out, clock=clock, **kwargs)


def test_eta_leaves_out_the_compilation_and_follows_recent_steps():
  clock, out = Clock(), io.StringIO()
  p = progress(clock, out, window=2)
  clock.now = 30.0  # the first call compiles for 30 s
  p.advance(1)
  for step in range(2, 11):
    clock.now += 0.1
    p.advance(step)
  line = p.log(10, {"loss": np.float32(0.5), "examples_per_sec": 1.0})
  assert p.steps_per_sec() == pytest.approx(10.0)  # 9 steps in 0.9 s: not the 30 s
  assert p.eta(10) == pytest.approx(9.0)
  assert line == "step  10/100 (10%)  loss 0.5  320 ex/s  elapsed 0:00:31  ETA 0:00:09"
  assert out.getvalue() == line + "\n"
  for end in (20, 30):  # slower: 10 steps in 2 s each; the window keeps the last two
    clock.now += 2.0
    p.log(end, {"loss": 0.4})
  assert p.steps_per_sec() == pytest.approx(5.0)
  assert p.eta(30) == pytest.approx(14.0)
  assert p.eta(100) == 0.0


def test_eta_before_any_window_is_unknown_and_evaluations_count():
  clock, out = Clock(), io.StringIO()
  p = progress(clock, out, eval_every=(50, 0))
  clock.now = 5.0
  p.advance(10)  # one call of 10 steps, then the log step: no window yet
  assert p.log(10, {"loss": 1.0}).endswith("? ex/s  elapsed 0:00:05  ETA ?")
  clock.now = 6.0
  p.log(20, {"loss": 1.0})  # 10 steps/s
  clock.now = 9.0
  p.log(50, {"loss": 1.0})
  clock.now = 29.0
  p.evaluated(50, {"val": {"val/loss": 0.1}}, 20.0)  # left out of the rate
  clock.now = 30.0
  p.log(60, {"loss": 1.0})
  assert p.steps_per_sec() == pytest.approx(10.0)
  assert p.eta(60) == pytest.approx(40 / 10 + 20.0)  # and the evaluation at step 100


def test_only_process_zero_prints_and_a_terminal_gets_a_bar():
  clock, out = Clock(), io.StringIO()
  quiet = progress(clock, out, enabled=False)
  quiet.advance(1)
  quiet.log(10, {"loss": 1.0})
  quiet.evaluated(10, {"val": {"val/loss": 1.0}}, 1.0)
  quiet.close()
  assert out.getvalue() == ""

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  terminal = Terminal()
  live = writers.Progress(100, 0, 32, out=terminal, clock=clock, enabled=True)
  clock.now = 1.0
  live.advance(1)
  clock.now = 2.0
  live.log(10, {"loss": 0.5})
  clock.now = 3.0
  live.advance(11)
  live.close()
  text = terminal.getvalue()
  assert "\r" in text and "11/100" in text and "ETA 0:00:" in text  # the bar, redrawn
  assert "step  10/100 (10%)  loss 0.5" in text
