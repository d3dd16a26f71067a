"""Metric writers: TensorBoard and logs through clu, plus ``metrics.jsonl`` in the workdir."""
import json
import os

import jax
import numpy as np
from clu import metric_writers


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


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard + logging on process 0 (logging only elsewhere), and metrics.jsonl."""
  primary = jax.process_index() == 0
  default = metric_writers.create_default_writer(workdir, just_logging=not primary)
  if not primary:
    return default
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``metrics.jsonl``, oldest first."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
