"""Metric writers: logs through clu, TensorBoard event files (without TensorFlow), and
``metrics.jsonl`` in the workdir."""
import io
import itertools
import json
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from clu import metric_writers
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
  """Logging, TensorBoard (written asynchronously) and metrics.jsonl on process 0; logging
  only elsewhere."""
  if jax.process_index() != 0:
    return metric_writers.create_default_writer(just_logging=True)
  default = metric_writers.AsyncMultiWriter(
      [metric_writers.LoggingWriter(), TensorBoardWriter(workdir)])
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``metrics.jsonl``, oldest first."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
