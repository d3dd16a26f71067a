"""A run's records: metrics.jsonl (one object per step, every checkpointed step on disk, each
step once after a resume), results.json's fields, TensorBoard's learning rate, hparams and
resume marker, and curves.png."""
import glob
import json
import os
import struct

import numpy as np
import optax
import pytest
from PIL import Image
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from research.core import writers
from research.train import curves, loop, workdir as workdir_lib
from tests.conftest import load_config, run_launcher, stderr_summary

SMALL = {"model.conv_features": (8,), "model.dense_features": (16,)}
RUN = dict(total_steps=30, log_every_steps=5, eval_every_steps=10, checkpoint_every_steps=10,
           gate="test/accuracy>=0.0", **{"optimizer.warmup_steps": 5})
TIMING = ("steps_per_sec", "uptime", "train/examples_per_sec", loop.WALL_TIME)


class Interrupted(Exception):
  pass


def config_of(data_dir):
  return load_config("cnn", data_dir=data_dir, **SMALL, **RUN)


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
  """An uninterrupted run, and one interrupted after step 15's log (its newest checkpoint is
  step 10's), then resumed: their workdirs and results, and the records the interrupted one
  left."""
  root = tmp_path_factory.mktemp("records")
  straight, resumed = str(root / "straight"), str(root / "resumed")
  expected = loop.train_and_evaluate(config_of(data_dir), straight, config_name="cnn:digits")

  def interrupt(step):
    if step == 15:
      raise Interrupted

  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config_of(data_dir), resumed, step_hook=interrupt,
                            config_name="cnn:digits")
  left = writers.read_metrics(resumed)
  results = loop.train_and_evaluate(config_of(data_dir), resumed, config_name="cnn:digits")
  return {"straight": straight, "resumed": resumed, "expected": expected, "results": results,
          "left": left}


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def events(workdir: str) -> list[list[event_pb2.Event]]:
  """The events of each TensorBoard file in ``workdir``, oldest file first (TFRecords:
  length, its CRC, the data, its CRC)."""
  out = []
  def order(path):  # events.out.tfevents.TIME.HOST.PID.N
    parts = os.path.basename(path).split(".")
    return int(parts[3]), int(parts[-1])

  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*")), key=order):
    data, file_events, pos = open(path, "rb").read(), [], 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      file_events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
      pos += 12 + length + 4
    out.append(file_events)
  return out


def tensorboard_scalars(workdir: str, tag: str) -> list[tuple[int, float]]:
  """``[(step, value), ...]`` of ``tag`` as TensorBoard reads the workdir (all its files, with
  its purge of orphaned data: a SessionLog START at step S drops earlier events at >= S)."""
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(workdir)
  accumulator.Reload()
  return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def test_one_record_per_step_with_the_expected_keys(runs):
  records = writers.read_metrics(runs["straight"])
  assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
  for r in records:
    for key in ("train/loss", "train/accuracy", "train/learning_rate", "steps_per_sec",
                "train/examples_per_sec", loop.WALL_TIME):
      assert key in r, (key, r)
  assert [r["step"] for r in records if "val/loss" in r] == [10, 20, 30]
  assert [r["step"] for r in records if "test/accuracy" in r] == [30]
  times = [r[loop.WALL_TIME] for r in records]
  assert times == sorted(times) and times[0] > 0


def test_learning_rate_is_the_schedule_of_each_step(runs):
  config = config_of(None)
  lr, warmup, total = config.optimizer.learning_rate, 5, config.total_steps
  schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                   optax.cosine_decay_schedule(lr, total - warmup)], [warmup])
  records = writers.read_metrics(runs["straight"])
  logged = [r["train/learning_rate"] for r in records]
  np.testing.assert_allclose(logged, [float(schedule(r["step"] - 1)) for r in records],
                             rtol=1e-6)
  assert logged[0] == pytest.approx(lr * 4 / 5)  # step 5's update: the 5th of the warm-up
  tensorboard = tensorboard_scalars(runs["straight"], "train/learning_rate")
  assert [s for s, _ in tensorboard] == [5, 10, 15, 20, 25, 30]
  np.testing.assert_allclose([v for _, v in tensorboard], logged, rtol=1e-6)


def test_resumed_run_holds_each_step_once_as_an_uninterrupted_run(runs):
  # The interrupted run had logged step 15 after its checkpoint of step 10.
  assert [r["step"] for r in runs["left"]] == [5, 10, 15]
  straight, resumed = (writers.read_metrics(runs[k]) for k in ("straight", "resumed"))
  assert [r["step"] for r in resumed] == [5, 10, 15, 20, 25, 30]
  assert without_timing(resumed) == without_timing(straight)
  assert runs["results"] == runs["expected"]
  # TensorBoard: the rerun marks where it resumed, so steps after 10 count once.
  files = events(runs["resumed"])
  assert len(files) == 2
  starts = [e.step for e in files[1] if e.HasField("session_log")]
  assert starts == [11]
  loss = tensorboard_scalars(runs["resumed"], "train/loss")
  assert [s for s, _ in loss] == [5, 10, 15, 20, 25, 30]
  want = {r["step"]: r["train/loss"] for r in straight}
  np.testing.assert_allclose([v for _, v in loss], [want[s] for s, _ in loss], rtol=1e-6)


def test_results_json_describes_the_run(runs):
  for name in ("straight", "resumed"):
    results = workdir_lib.read_results(runs[name], run_fields=True)
    assert results["config"] == "cnn:digits"
    assert results["gate"] == "test/accuracy>=0.0" and results["gate_passed"] is True
    assert results["step"] == 30.0 and isinstance(results["test/accuracy"], float)
    last = writers.read_metrics(runs[name])[-1]
    assert results[loop.WALL_TIME] >= last[loop.WALL_TIME] > 0
    # What train_and_evaluate returns (and read_results): the results without the run's fields.
    returned = runs["expected" if name == "straight" else "results"]
    assert workdir_lib.read_results(runs[name]) == returned
    assert returned == {k: v for k, v in results.items() if k not in workdir_lib.RUN_FIELDS}
  # The resumed run's wall time adds its first process's time up to step 10's checkpoint.
  left = {r["step"]: r[loop.WALL_TIME] for r in runs["left"]}
  resumed = {r["step"]: r[loop.WALL_TIME] for r in writers.read_metrics(runs["resumed"])}
  assert resumed[10] == left[10] and resumed[15] > left[10]


def test_hparams_hold_the_whole_config(runs):
  summaries = [v for e in events(runs["straight"])[0] for v in e.summary.value]
  text = next(v for v in summaries if v.tag == "hparams/text_summary" or v.tag == "hparams")
  table = text.tensor.string_val[0].decode()
  for row in ("| optimizer.learning_rate | 0.001 |", "| model.name | cnn |",
              "| data.name | digits |", "| total_steps | 30 |"):
    assert row in table, (row, table)
  assert "data.data_dir" not in table  # machine-local fields stay out
  session = next(v for v in summaries if v.tag == "_hparams_/session_start_info")
  assert session.metadata.plugin_data.plugin_name == "hparams"
  info = plugin_data_pb2.HParamsPluginData.FromString(
      session.metadata.plugin_data.content).session_start_info
  assert info.hparams["optimizer.learning_rate"].number_value == pytest.approx(1e-3)
  assert info.hparams["model.name"].string_value == "cnn"
  assert info.hparams["model.conv_features"].string_value == "(8,)"


def test_curves_png_at_the_end(runs):
  for name in ("straight", "resumed"):
    with Image.open(os.path.join(runs[name], workdir_lib.CURVES_FILE)) as image:
      width, height = image.size
    assert width >= 800 and 300 <= height <= width


def test_main_metric_comes_from_the_logged_pairs():
  def records(*names):
    return [{"step": 10, **{name: 1.0 for name in names}}]

  pick = lambda *names: curves.main_metric(curves.series(records(*names)))  # noqa: E731
  assert pick("train/loss", "train/accuracy", "val/loss", "val/accuracy") == "accuracy"
  assert pick("train/loss", "train/neg_elbo", "train/kl", "val/neg_elbo", "val/kl") == "neg_elbo"
  assert pick("train/loss", "train/grad_norm", "train/zeta", "val/zeta") == "zeta"
  assert pick("train/loss", "train/grad_norm", "train/learning_rate") is None
  assert pick("replica_0/train/loss", "replica_1/train/accuracy",
              "replica_1/val/accuracy") == "accuracy"


def test_curves_are_skipped_without_records_and_drawn_for_replicas(tmp_path):
  assert curves.write_curves(str(tmp_path), []) is None
  assert curves.write_curves(str(tmp_path), [{"step": 5, "steps_per_sec": 3.0}]) is None
  assert not os.listdir(tmp_path)
  records = [{"step": s, **{f"replica_{i}/{split}/{m}": 1.0 / (s + i)
                            for i in range(2) for split in ("train", "val")
                            for m in ("loss", "accuracy")}} for s in (5, 10)]
  assert curves.write_curves(str(tmp_path), records) == str(tmp_path / "curves.png")


def test_jsonl_writer_merges_a_step_and_rewrites_a_late_one(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  writer = writers.JsonlWriter(path)
  writer.write_scalars(5, {"train/loss": 2.0})
  writer.write_scalars(5, {"steps_per_sec": 3.0})
  writer.write_scalars(10, {"train/loss": 1.0})
  writer.flush()  # before a checkpoint: step 10 is on disk
  assert writers.read_metrics(str(tmp_path)) == [
      {"step": 5, "train/loss": 2.0, "steps_per_sec": 3.0}, {"step": 10, "train/loss": 1.0}]
  writer.write_scalars(10, {"test/accuracy": 0.5})  # after the flush: the last line is redone
  writer.close()
  assert writers.read_metrics(str(tmp_path))[-1] == {"step": 10, "train/loss": 1.0,
                                                     "test/accuracy": 0.5}
  # A later writer of the file (--mode=eval again, a resumed run) merges into its last record.
  writer = writers.JsonlWriter(path)
  writer.write_scalars(10, {"test/accuracy": 0.75})
  writer.close()
  assert [r["step"] for r in writers.read_metrics(str(tmp_path))] == [5, 10]
  assert writers.read_metrics(str(tmp_path))[-1]["test/accuracy"] == 0.75


def test_jsonl_writer_drops_torn_lines_and_the_steps_after_a_resume(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 5, "a": 1.0}\n{"step": 10, "a": 2.0}\n{"step": 15, "a": 3.0}\n{"step": 2')
  writer = writers.JsonlWriter(path)  # the torn line is cut off
  assert writers.read_metrics(str(tmp_path))[-1] == {"step": 15, "a": 3.0}
  assert writer.truncate_after(10) == {"step": 10, "a": 2.0}
  writer.write_scalars(15, {"a": 4.0})
  writer.close()
  assert writers.read_metrics(str(tmp_path)) == [
      {"step": 5, "a": 1.0}, {"step": 10, "a": 2.0}, {"step": 15, "a": 4.0}]
  assert not os.path.exists(path + ".tmp")


def test_launcher_records_the_config_name(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = run_launcher("--config=mlp:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=10",
                      "--config.log_every_steps=5")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  results = json.load(open(workdir / "results.json"))
  assert results["config"] == "mlp:digits"
  assert results["gate"] is None and results["gate_passed"] is True  # no gate: passed
  assert results[loop.WALL_TIME] > 0 and results["step"] == 10.0
  assert [r["step"] for r in writers.read_metrics(str(workdir))] == [5, 10]
  assert (workdir / "curves.png").exists()
  results_line = next(line for line in proc.stdout.splitlines() if line.startswith("results: "))
  assert "gate_passed=1" in results_line and "test/accuracy=" in results_line
