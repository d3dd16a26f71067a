"""Datasets by TFDS name, split into train/validation/test, fed as sharded batches.

Splits that fit in host memory are read once into numpy. The order of training
examples is a function of ``(seed, step)`` alone: epoch ``e`` visits a permutation
drawn from ``(seed, e)``, so a resumed run sees exactly the batches an
uninterrupted one would. Each process gathers only its own slice of every global
batch, ready for multi-host runs.
"""
import collections
import functools
import importlib
import os
import shutil
import socket
import urllib.parse
import urllib.request
from typing import Iterable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from research import errors
from research.data import cache

# Datasets the project ships as TFDS builders; importing registers them by name.
BUNDLED_DATASET_MODULES = ("research.data.digits", "research.data.synthetic_intents",
                           "research.data.penguins")
FALLBACK_DATA_DIR = os.path.expanduser("~/tensorflow_datasets")
LOAD_CHUNK = 10_000  # examples per tf.data batch while reading a split into memory
# TFDS fetches prepared datasets from its Google Cloud Storage mirror first; a machine that
# cannot open a connection there (or to its HTTPS proxy) is offline for TFDS.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
CONNECT_TIMEOUT_SEC = 3.0
OFFLINE_HINT = ("or run offline on a bundled dataset: --config=NAME:digits (text configs: "
                "NAME:synthetic_intents, multi-label NAME:synthetic_multi_intents)")


class DatasetUnavailableError(errors.UserError):
  """A dataset is unknown, or neither prepared nor allowed to download."""


def _register_bundled() -> None:
  for module in BUNDLED_DATASET_MODULES:
    importlib.import_module(module)


def _writable_dir(path: str) -> bool:
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  return os.access(path or ".", os.W_OK)


@functools.cache
def tensorflow_for_data():
  """TensorFlow, imported only where TFDS needs it (reading an uncached split, preparing a
  dataset), with the GPUs hidden from it: tf.data runs on the host, JAX owns accelerators."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF was already running (started by the caller): leave it as it is
    pass
  return tf


def get_builder(name: str, data_dir: str | None, download: bool):
  """The prepared TFDS builder for ``name``; raises DatasetUnavailableError when there is none."""
  _register_bundled()
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetUnavailableError(
        f"unknown dataset {name!r}: TFDS has no builder of that name "
        f"(bundled here: digits, penguins, synthetic_intents, synthetic_multi_intents; see "
        f"tfds.list_builders())") from None
  if builder.is_prepared():
    return builder
  if getattr(builder, "BUNDLED", False):
    if not _writable_dir(builder.data_dir):
      builder = tfds.builder(name, data_dir=FALLBACK_DATA_DIR)
    if not builder.is_prepared():
      tensorflow_for_data()
      builder.download_and_prepare()
    return builder
  searched = os.path.dirname(os.path.dirname(builder.data_dir))
  if download:
    download_and_prepare(builder, searched)
    return builder
  raise DatasetUnavailableError(
      f"dataset {name!r} is not prepared in {searched} (looked for {builder.data_dir}) "
      f"and downloading is off. Fix: point TFDS_DATA_DIR or --config.data.data_dir at a "
      f"folder where it is prepared, allow a download with --config.data.download=True, "
      f"{OFFLINE_HINT}")


def download_host() -> tuple[str, int]:
  """Where a download's first connection goes: the HTTPS proxy when one is set, else TFDS's
  storage mirror."""
  proxy = urllib.request.getproxies().get("https")
  if proxy:
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or proxy, parsed.port or (443 if parsed.scheme == "https" else 80)
  return DOWNLOAD_HOST


def check_connection(name: str, data_dir: str) -> None:
  """Fails in seconds, with one line, where a download cannot start (no network, DNS or
  proxy), instead of TFDS's minutes of retries."""
  host, port = download_host()
  try:
    socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SEC).close()
  except OSError as e:
    raise DatasetUnavailableError(
        f"cannot download dataset {name!r}: no connection to {host}:{port} ({e}). Fix: "
        f"prepare it on a machine with internet and point TFDS_DATA_DIR or "
        f"--config.data.data_dir at that folder (searched: {data_dir}), "
        f"{OFFLINE_HINT}") from None


def _entries(folder: str) -> set[str]:
  return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def download_and_prepare(builder, data_dir: str) -> None:
  """``builder.download_and_prepare()`` after a connection check; a failed download is one
  line and leaves nothing behind (the files and folders it created are removed)."""
  check_connection(builder.name, data_dir)
  watched = [data_dir, os.path.join(data_dir, "downloads"),
             os.path.dirname(builder.data_dir)]
  before = {folder: _entries(folder) for folder in watched}
  tensorflow_for_data()
  try:
    builder.download_and_prepare()
  except Exception as e:  # network, disk or checksum: TFDS raises many kinds
    for folder in reversed(watched):
      for entry in _entries(folder) - before[folder]:
        path = os.path.join(folder, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    reason = " ".join(str(e).split())[:300] or type(e).__name__
    raise DatasetUnavailableError(
        f"downloading dataset {builder.name!r} into {data_dir} failed ({type(e).__name__}: "
        f"{reason}); its partial files were removed. Fix: rerun when the network is back, or "
        f"point TFDS_DATA_DIR or --config.data.data_dir at a folder where it is prepared") from None


def load_split(config: ml_collections.ConfigDict, split: str,
               field: str = "split") -> dict[str, np.ndarray]:
  """The whole ``split`` of ``config.name`` as numpy arrays of ``config.features``;
  ``field`` names the config field that chose the split, for error messages. A split read
  once is cached in ``config.cache_dir`` (research/data/cache.py)."""
  builder = get_builder(config.name, config.data_dir, config.download)  # missing data fails here
  path = cache.entry_path(config.get("cache_dir", ""), builder, split, config.features)
  arrays = cache.load(path, config.features) if path else None
  if arrays is None:
    arrays = read_split(builder, config, split, field)
    if path:
      cache.save(path, arrays)
  return arrays


def read_split(builder, config: ml_collections.ConfigDict, split: str,
               field: str) -> dict[str, np.ndarray]:
  """``load_split`` through tf.data, without the cache."""
  tensorflow_for_data()
  try:
    dataset = builder.as_dataset(split=split)
  except ValueError as e:
    raise DatasetUnavailableError(
        f"data.{field}={split!r} is not a split of {config.name!r}; it must be one of "
        f"{', '.join(builder.info.splits)} or a slice such as 'train[:90%]' ({e})") from None
  chunks = list(tfds.as_numpy(dataset.batch(LOAD_CHUNK)))
  data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
  missing = [f for f in config.features if f not in data]
  if missing:
    raise DatasetUnavailableError(
        f"dataset {config.name!r} has no feature(s) {missing}; it has {sorted(data)}")
  return {f: data[f] for f in config.features}


def num_examples(arrays: dict[str, np.ndarray]) -> int:
  return len(next(iter(arrays.values())))


class TrainBatches:
  """Shuffled training batches whose content depends only on ``(seed, step)``.

  Each epoch is a fresh permutation; the last partial batch of an epoch is dropped.
  """

  def __init__(self, arrays: dict[str, np.ndarray], global_batch_size: int, seed: int):
    self.arrays = arrays
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.size = num_examples(arrays)
    self.steps_per_epoch = self.size // global_batch_size
    if self.steps_per_epoch == 0:
      raise errors.ConfigError(
          f"batch size {global_batch_size} exceeds the {self.size} training examples")
    self._epoch, self._permutation = None, None

  def spec(self) -> dict[str, tuple[list[int], str]]:
    """Per-example shape and dtype of each feature."""
    return {k: (list(v.shape[1:]), str(v.dtype)) for k, v in self.arrays.items()}

  def indices(self, step: int) -> np.ndarray:
    """Global example indices of the batch consumed at ``step``."""
    epoch, position = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._epoch, self._permutation = epoch, rng.permutation(self.size)
    start = position * self.global_batch_size
    return self._permutation[start:start + self.global_batch_size]

  def local_indices(self, step: int) -> np.ndarray:
    """This process's slice of ``indices(step)``."""
    local_size = self.global_batch_size // jax.process_count()
    start = jax.process_index() * local_size
    return self.indices(step)[start:start + local_size]

  def local_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's slice of the global batch at ``step``."""
    indices = self.local_indices(step)
    return {k: v[indices] for k, v in self.arrays.items()}

  def local_step_indices(self, start: int, end: int) -> np.ndarray:
    """``local_indices`` of steps ``start .. end - 1`` stacked, int32 ``(end - start, local batch)``:
    what a multi-step call gathers from the device-resident split."""
    return np.stack([self.local_indices(s) for s in range(start, end)]).astype(np.int32)


def eval_batches(arrays: dict[str, np.ndarray], global_batch_size: int) -> list[dict]:
  """This process's slices of fixed-size batches over a whole split, in order.

  The last batch is padded with zeros; ``mask`` is 1 for real examples only.
  """
  size = num_examples(arrays)
  local_size = global_batch_size // jax.process_count()
  offset = jax.process_index() * local_size
  batches = []
  for start in range(0, size, global_batch_size):
    index = np.arange(start + offset, start + offset + local_size)
    valid = index < size
    index = np.where(valid, index, 0)
    batch = {k: np.where(_expand(valid, v), v[index], 0).astype(v.dtype)
             for k, v in arrays.items()}
    batch["mask"] = valid.astype(np.float32)
    batches.append(batch)
  return batches


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
  return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def prefetch(iterable: Iterable, size: int = 2) -> Iterator:
  """Keeps ``size`` items in flight, so host-to-device copies overlap compute."""
  queue = collections.deque()
  iterator = iter(iterable)
  for item in iterator:
    queue.append(item)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
