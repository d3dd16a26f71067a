"""Metric writers: TensorBoard event files (without TensorFlow) and ``metrics.jsonl`` in
the workdir; and the run's console (``Progress``): one line per log step and per
evaluation, on process 0, with a live bar on a terminal."""
import collections
import io
import itertools
import json
import math
import os
import shutil
import socket
import sys
import time

import jax
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary  # without TensorFlow
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer import record_writer

METRICS_FILE = "metrics.jsonl"
_event_files = itertools.count()  # tells apart files opened in the same second


class JsonlWriter(metric_writers.MetricWriter):
  """``metrics.jsonl``: one JSON object per step, ``{"step": N, name: value, ...}``.

  The writes for one step (train metrics, rates, evaluations) are merged into one pending
  record, emitted when a write for another step arrives, on ``flush`` and on ``close``. A
  write for the step of the last record already in the file (e.g. the final test
  evaluation after the final checkpoint's flush, or a second ``--mode=eval`` of the same
  checkpoint) merges into that record, which then replaces the file's last line. ``flush``
  also fsyncs the file. ``truncate_after(step)`` drops the records after a step (resume)."""

  def __init__(self, path: str):
    self.path = path
    self._pending: dict | None = None
    self._open()

  def _open(self) -> None:
    """Opens the file for appending and finds its last record (a torn last line, from a
    process killed while writing it, is cut off)."""
    self._file = open(self.path, "ab")
    self._end = self._file.seek(0, os.SEEK_END)
    self._last: dict | None = None  # the file's last record
    self._last_start = self._end  # the byte offset its line starts at
    if self._end == 0:
      return
    with open(self.path, "rb") as f:
      start = _line_start(f, self._end)
      f.seek(start)
      line = f.read()
    if not line.endswith(b"\n"):
      logging.warning("%s ends in a torn record (%d bytes); it is dropped.", self.path,
                      len(line))
      self._truncate(start)
      if start == 0:
        return
      with open(self.path, "rb") as f:
        start = _line_start(f, start)
        f.seek(start)
        line = f.read()
    try:
      self._last, self._last_start = json.loads(line), start
    except ValueError:
      self._last = None  # not a record: never merged into

  def _truncate(self, size: int) -> None:
    self._file.flush()
    self._file.truncate(size)
    self._end = size

  def write_scalars(self, step, scalars):
    step = int(step)
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    if self._pending is not None and self._pending["step"] != step:
      self._emit()
    if self._pending is None:
      if self._last is not None and self._last.get("step") == step:
        self._pending, self._replaces_last = dict(self._last), True
      else:
        self._pending, self._replaces_last = {"step": step}, False
    self._pending.update(values)

  def _emit(self) -> None:
    """Appends the pending record (replacing the file's last line if it is that step's)."""
    if self._pending is None:
      return
    if self._replaces_last:
      self._truncate(self._last_start)
    line = (json.dumps(self._pending) + "\n").encode()
    self._file.write(line)
    self._last, self._last_start, self._pending = self._pending, self._end, None
    self._end += len(line)

  def truncate_after(self, step: int) -> dict | None:
    """Drops the records of steps after ``step`` (a resumed run redoes them), rewriting the
    file atomically; returns the last record kept (None: none)."""
    self._emit()
    self._file.close()
    kept, dropped = [], 0
    with open(self.path, "rb") as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:  # a torn line
          dropped += 1
          continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
          kept.append(line if line.endswith(b"\n") else line + b"\n")
        else:
          dropped += 1
    if dropped:
      with open(self.path + ".tmp", "wb") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
      os.replace(self.path + ".tmp", self.path)
      logging.info("Dropped %d records after step %d from %s.", dropped, step, self.path)
    self._open()
    return self._last

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._emit()
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self):
    if not self._file.closed:
      self.flush()
      self._file.close()


def _line_start(f, end: int, block: int = 1 << 16) -> int:
  """The offset where the line ending at ``end`` (its newline excluded) starts."""
  f.seek(end - 1)
  pos = end - 1 if f.read(1) == b"\n" else end
  while pos > 0:
    start = max(0, pos - block)
    f.seek(start)
    newline = f.read(pos - start).rfind(b"\n")
    if newline >= 0:
      return start + newline + 1
    pos = start
  return 0


def png(image: np.ndarray) -> bytes:
  """An (H, W, 1|3|4) image, floats in [0, 1] or uint8, encoded as PNG."""
  from PIL import Image
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()


class TensorBoardWriter(metric_writers.MetricWriter):
  """A TensorBoard event file in ``logdir``, written by the ``tensorboard`` package's record
  writer without TensorFlow: scalars as simple values, images as PNG, texts and hparams
  (a markdown table under ``hparams``) as text summaries."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}."
            f"{next(_event_files)}")
    self.path = os.path.join(logdir, name)
    self._records = record_writer.RecordWriter(open(self.path, "wb"))
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    self._warned = set()

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def _write_summary(self, step: int, summary: summary_pb2.Summary) -> None:
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step, scalars):
    self._write_summary(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=float(np.asarray(v)))
        for k, v in scalars.items()]))

  def write_images(self, step, images):
    """(N, H, W, C) or (H, W, C) images; several per name are tagged ``name/i``."""
    values = []
    for name, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      for i, image in enumerate(batch):
        tag = name if len(batch) == 1 else f"{name}/{i}"
        values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
            height=image.shape[0], width=image.shape[1], colorspace=image.shape[2],
            encoded_image_string=png(image))))
    self._write_summary(step, summary_pb2.Summary(value=values))

  def write_texts(self, step, texts):
    for name, text in texts.items():
      self._write_summary(step, text_summary.text_pb(name, text))

  def write_hparams(self, hparams):
    """``{name: value}`` (e.g. the flattened config, ``optimizer.learning_rate``) as the text
    ``hparams`` (a markdown table) and as the HParams dashboard's session (values other than
    bools, numbers and strings as their text)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(hparams.items()))
    self.write_texts(0, {"hparams": f"| name | value |\n| --- | --- |\n{rows}"})
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in hparams.items()}
    self._write_summary(0, hparams_summary.hparams_pb(values, start_time_secs=time.time()))

  def write_session_start(self, step: int) -> None:
    """A SessionLog START at ``step``: TensorBoard drops the events it read before it (in
    this logdir's older files) whose step is ``step`` or later, e.g. those a killed run
    logged after the checkpoint its rerun resumes from."""
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                session_log=event_pb2.SessionLog(
                                    status=event_pb2.SessionLog.START)))

  def _unsupported(self, kind: str) -> None:
    if kind not in self._warned:
      self._warned.add(kind)
      logging.warning("TensorBoardWriter does not write %s; they are dropped.", kind)

  def write_summaries(self, step, values, metadata=None):
    self._unsupported("summaries")

  def write_videos(self, step, videos):
    self._unsupported("videos")

  def write_audios(self, step, audios, *, sample_rate):
    self._unsupported("audios")

  def write_histograms(self, step, arrays, num_buckets=None):
    self._unsupported("histograms")

  def flush(self):
    self._records.flush()

  def close(self):
    self._records.close()


class RunWriter(metric_writers.MultiWriter):
  """A run's writers: TensorBoard (written asynchronously) and metrics.jsonl, or none (the
  processes other than 0); ``resume`` prepares both for a run resumed from a step."""

  def __init__(self, tensorboard: TensorBoardWriter | None = None,
               jsonl: JsonlWriter | None = None):
    self._tensorboard, self._jsonl = tensorboard, jsonl
    self._async = metric_writers.AsyncMultiWriter([tensorboard]) if tensorboard else None
    super().__init__([w for w in (self._async, jsonl) if w is not None])

  def resume(self, step: int) -> dict | None:
    """Before a run (re)starts after ``step`` (0: a fresh start): drops metrics.jsonl's
    records after ``step`` and has TensorBoard drop its events after it (a SessionLog START
    at ``step + 1``), as a killed run may have logged steps past its last checkpoint.
    Returns metrics.jsonl's last record kept (None: none, or not process 0)."""
    if self._async is not None:
      self._async.flush()
      self._tensorboard.write_session_start(step + 1)
    return self._jsonl.truncate_after(step) if self._jsonl is not None else None


def create_writer(workdir: str) -> RunWriter:
  """TensorBoard and metrics.jsonl on process 0; nothing elsewhere. The console's lines come
  from ``Progress``, not from a writer."""
  if jax.process_index() != 0:
    return RunWriter()
  return RunWriter(TensorBoardWriter(workdir), JsonlWriter(os.path.join(workdir, METRICS_FILE)))


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``metrics.jsonl``, one per step, oldest first."""
  with open(os.path.join(workdir, METRICS_FILE)) as f:
    return [json.loads(line) for line in f if line.strip()]


class RateScalars(periodic_actions.ReportProgress):
  """clu's ReportProgress for its scalars alone: ``steps_per_sec`` and ``uptime`` records
  for the writer at the steps it reports, without its work-unit notes (absl INFO lines;
  the console has ``Progress`` instead)."""

  def _apply(self, step: int, t: float):
    steps_per_sec = (step - self._previous_step) / (t - self._previous_time)
    if self._writer is not None:
      self._writer.write_scalars(step, {"steps_per_sec": steps_per_sec,
                                        "uptime": time.monotonic() - self._t0})


def format_duration(seconds: float | None) -> str:
  """``h:mm:ss`` rounded to the second (``0:08:55``, ``12:00:00``); ``?`` when unknown."""
  if seconds is None or not math.isfinite(seconds) or seconds < 0:
    return "?"
  total = int(round(seconds))
  return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def format_value(value) -> str:
  """A metric, 4 significant digits; per-replica arrays as ``min..max``."""
  value = np.asarray(value, np.float64).ravel()
  if value.size == 0:
    return "?"
  if value.size > 1 and value.min() != value.max():
    return f"{value.min():.4g}..{value.max():.4g}"
  return f"{value[0]:.4g}"


def format_metrics(scalars: dict, limit: int = 4) -> str:
  """``loss 0.2314  accuracy 0.9375``: loss (or the first metric) first, at most ``limit``."""
  names = sorted(scalars, key=lambda k: k != "loss")[:limit]
  return "  ".join(f"{k} {format_value(scalars[k])}" for k in names)


def step_line(step: int, num_steps: int, metrics: str, examples_per_sec: float | None,
              elapsed: float, eta: float | None) -> str:
  """``step  300/4210 (7%)  loss 0.2314  accuracy 0.9375  1,820 ex/s  elapsed 0:00:41  ETA 0:08:55``."""
  width = len(str(num_steps))
  percent = 100 * step // num_steps if num_steps > 0 else 100
  return (f"step {step:>{width}}/{num_steps} ({percent}%)  "
          + status(metrics, examples_per_sec, elapsed, eta))


def status(metrics: str, examples_per_sec: float | None, elapsed: float,
           eta: float | None) -> str:
  """A step line after its step: ``loss 0.2314  1,820 ex/s  elapsed 0:00:41  ETA 0:08:55``."""
  rate = f"{examples_per_sec:,.0f} ex/s" if examples_per_sec else "? ex/s"
  parts = [metrics, rate, f"elapsed {format_duration(elapsed)}", f"ETA {format_duration(eta)}"]
  return "  ".join(p for p in parts if p)


def eval_line(step: int, results: dict[str, dict[str, float]], seconds: float,
              limit: int = 4) -> str:
  """``step 1000  val: loss 0.05  accuracy 0.985  (eval 3.2 s)``: each evaluation's scalars
  (``NAME/metric`` or ``replica_I/NAME/metric``) without their prefixes; an evaluation
  without scalars (images) by its name."""
  parts = []
  for name, scalars in results.items():
    metrics = collections.defaultdict(list)
    for key, value in scalars.items():
      parts_of_key = key.split("/")
      if parts_of_key[0].startswith("replica_"):
        parts_of_key = parts_of_key[1:]
      metrics["/".join(parts_of_key[1:] or parts_of_key)].append(value)
    text = format_metrics({k: np.asarray(v) for k, v in metrics.items()}, limit)
    parts.append(f"{name}: {text}" if text else name)
  return f"step {step}  " + "  |  ".join(parts) + f"  (eval {seconds:.1f} s)"


class Progress:
  """The run's console, printed by process 0 alone: one line per log step (``step_line``)
  and per evaluation (``eval_line``); on a terminal also a live tqdm bar under them.

  examples/s and the ETA come from the rate of the last ``window`` log intervals of
  training alone: timed from the end of the first call (its compilation excluded), each
  restarting after the log step or evaluation that ended the previous one. The ETA adds
  the periodic evaluations still due (``eval_every``: their intervals), each taking as
  long as the latest."""

  def __init__(self, num_steps: int, start_step: int, batch_size: int,
               eval_every: tuple[int, ...] = (), *, window: int = 5, out=None,
               live: bool | None = None, enabled: bool | None = None,
               clock=time.perf_counter):
    self.num_steps, self.batch_size = num_steps, batch_size
    self.eval_every = tuple(k for k in eval_every if k > 0)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._out = out or sys.stdout
    self._clock = clock
    self._start = clock()
    self._mark: tuple[int, float] | None = None  # where the current window starts
    self._windows = collections.deque(maxlen=window)  # (steps, seconds) of training
    self._eval_seconds: float | None = None
    self._metrics, self._refreshed = "", -math.inf
    self._bar = None
    live = self.enabled and (self._isatty() if live is None else live)
    if live:
      from tqdm import tqdm
      self._bar = tqdm(total=num_steps, initial=start_step, file=self._out, leave=False,
                       dynamic_ncols=True,
                       bar_format="step {n}/{total} {percentage:3.0f}% |{bar}| {desc}")

  def _isatty(self) -> bool:
    try:
      return self._out.isatty()
    except (AttributeError, ValueError):
      return False

  def _emit(self, line: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(line, file=self._out)
    else:
      print(line, file=self._out, flush=True)

  def steps_per_sec(self) -> float | None:
    steps, seconds = (sum(w) for w in zip(*self._windows)) if self._windows else (0, 0.0)
    return steps / seconds if steps and seconds > 0 else None

  def eta(self, step: int, rate: float | None = None) -> float | None:
    """Seconds until the last step: its steps at the measured rate (or ``rate``, steps/s),
    plus its evaluations."""
    rate = rate or self.steps_per_sec()
    if step >= self.num_steps:
      return 0.0
    if rate is None:
      return None
    evals = max((self.num_steps // k - step // k + (self.num_steps % k != 0)
                 for k in self.eval_every), default=0)
    return (self.num_steps - step) / rate + evals * (self._eval_seconds or 0.0)

  def elapsed(self) -> float:
    return self._clock() - self._start

  def advance(self, step: int) -> None:
    """After each call (of one or more steps) returned; the first ends the compilation."""
    now = self._clock()
    if self._mark is None:
      self._mark = (step, now)
    if self._bar is not None and now - self._refreshed > 0.25:
      self._refreshed = now
      self._bar.n = step
      room = shutil.get_terminal_size((120, 24)).columns - 2 * len(str(self.num_steps)) - 22
      self._bar.set_description_str(self._status(step)[:max(room, 0)], refresh=False)
      self._bar.refresh()

  def _rate(self) -> float | None:
    rate = self.steps_per_sec()
    return rate * self.batch_size if rate else None

  def _status(self, step: int) -> str:
    """The bar's text: ETA first (narrow terminals cut the end); before the first log step
    the rate of the steps so far (without the compilation)."""
    rate = self.steps_per_sec()
    if rate is None and self._mark is not None and step > self._mark[0]:
      rate = (step - self._mark[0]) / max(self._clock() - self._mark[1], 1e-9)
    eta = format_duration(self.eta(step, rate))
    speed = f"{rate * self.batch_size:,.0f} ex/s" if rate else "? ex/s"
    return "  ".join(p for p in (f"ETA {eta}", speed, f"elapsed {format_duration(self.elapsed())}",
                                 self._metrics) if p)

  def log(self, step: int, scalars: dict) -> str:
    """The log step's line, from its train metrics (``examples_per_sec`` is left out: the
    line has the rate without the compilation)."""
    now = self._clock()
    if self._mark is not None and step > self._mark[0]:
      self._windows.append((step - self._mark[0], now - self._mark[1]))
    self._mark = (step, now)
    self._metrics = format_metrics({k: v for k, v in scalars.items() if k != "examples_per_sec"})
    line = step_line(step, self.num_steps, self._metrics, self._rate(), self.elapsed(),
                     self.eta(step))
    self._emit(line)
    return line

  def evaluated(self, step: int, results: dict[str, dict[str, float]], seconds: float) -> str:
    """The evaluation's line; the training window restarts after it."""
    self._eval_seconds = seconds
    self._mark = (step, self._clock())
    line = eval_line(step, results, seconds)
    self._emit(line)
    return line

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
