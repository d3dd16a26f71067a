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
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer import record_writer

_event_files = itertools.count()  # tells apart files opened in the same second


class JsonlWriter(metric_writers.MetricWriter):
  """Appends one JSON object per ``write_scalars`` call: ``{"step": ..., name: value}``."""

  def __init__(self, path: str):
    self._file = open(path, "a")

  def write_scalars(self, step, scalars):
    record = {"step": int(step)}
    record.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(record) + "\n")

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
    self._file.flush()

  def close(self):
    self._file.close()


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
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(hparams.items()))
    self.write_texts(0, {"hparams": f"| name | value |\n| --- | --- |\n{rows}"})

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


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard (written asynchronously) and metrics.jsonl on process 0; nothing elsewhere.
  The console's lines come from ``Progress``, not from a writer."""
  if jax.process_index() != 0:
    return metric_writers.MultiWriter([])
  default = metric_writers.AsyncMultiWriter([TensorBoardWriter(workdir)])
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``metrics.jsonl``, oldest first."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


class RateScalars(periodic_actions.ReportProgress):
  """clu's ReportProgress for its scalars alone: ``steps_per_sec`` and ``uptime`` records
  for the writer at the steps it reports, without its work-unit notes (absl INFO lines;
  the console has ``Progress`` instead)."""

  def _apply(self, step: int, t: float):
    steps_per_sec = (step - self._previous_step) / (t - self._previous_time)
    if self._writer is not None:
      self._writer.write_scalars(step, {"steps_per_sec": steps_per_sec})
      self._writer.write_scalars(step, {"uptime": time.monotonic() - self._t0})


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
