"""Datasets by TFDS name, split into train/validation/test, fed as sharded batches.

Splits that fit in host memory are read once into numpy. The order of training
examples is a function of ``(seed, step)`` alone: epoch ``e`` visits a permutation
drawn from ``(seed, e)``, so a resumed run sees exactly the batches an
uninterrupted one would. Each process gathers only its own slice of every global
batch, ready for multi-host runs.
"""
import collections
import dataclasses
import functools
import glob
import importlib
import json
import os
import re
import shutil
import socket
import urllib.parse
import urllib.request
from typing import Iterable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from research import errors
from research.data import cache

# Datasets the project ships as TFDS builders; importing registers them by name.
BUNDLED_DATASET_MODULES = ("research.data.digits", "research.data.synthetic_intents",
                           "research.data.penguins", "research.data.dsprites_like",
                           "research.data.colored_mnist", "research.data.background_shift")
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


def reprepare_hint(name: str, folder) -> str:
  """How to replace the damaged prepared dataset ``name`` in ``folder``."""
  try:
    bundled = getattr(tfds.builder_cls(name.split(":")[0].split("/")[0]), "BUNDLED", False)
  except tfds.core.registered.DatasetNotFoundError:
    bundled = False
  if bundled:
    return f"delete {os.fspath(folder)} and rerun; a bundled dataset is prepared again offline"
  return (f"delete {os.fspath(folder)} and rerun with --config.data.download=True to prepare "
          f"it again, or rebuild it with `tfds build {name}`")


def check_data_dir(data_dir: str | None) -> None:
  """A data dir (``data.data_dir``, else TFDS_DATA_DIR) that is a file, or lies under one,
  is one line here rather than TFDS's NotADirectoryError halfway through preparing."""
  field, given = ("data.data_dir", data_dir) if data_dir else \
      ("TFDS_DATA_DIR", os.environ.get("TFDS_DATA_DIR"))
  if not given or "://" in given:  # cloud storage: TFDS checks it
    return
  path = os.path.abspath(os.path.expanduser(given))
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise DatasetUnavailableError(
        f"{field}={given!r} is not a folder ({path} is a file); point it at the folder that "
        f"holds the prepared datasets (e.g. ~/tensorflow_datasets), or at a new one to "
        f"prepare them in")


def damaged_json(data_dir: str | None, name: str) -> tuple[str, str] | None:
  """``(path, reason)`` of the first JSON file of dataset ``name``'s prepared folders that
  does not parse (e.g. a truncated ``dataset_info.json``); None when they all do."""
  root = data_dir or tfds.core.constants.DATA_DIR
  folder = os.path.join(os.path.expanduser(root), name.split(":")[0])
  for path in sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True)):
    try:
      with open(path, "rb") as f:
        json.loads(f.read())
    except (OSError, ValueError) as e:
      return path, " ".join(str(e).split())[:200] or type(e).__name__
  return None


def get_builder(name: str, data_dir: str | None, download: bool):
  """The prepared TFDS builder for ``name``; raises DatasetUnavailableError when there is none."""
  _register_bundled()
  check_data_dir(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetUnavailableError(
        f"unknown dataset {name!r}: TFDS has no builder of that name "
        f"(bundled here: digits, penguins, synthetic_intents, synthetic_multi_intents, "
        f"dsprites_like, colored_mnist, background_shift; see "
        f"tfds.list_builders())") from None
  except Exception:  # TFDS reads the prepared folder's metadata here
    damaged = damaged_json(data_dir, name)
    if damaged is None:
      raise
    path, reason = damaged
    raise DatasetUnavailableError(
        f"{path} cannot be read ({reason}): the prepared dataset {name!r} is damaged; "
        f"{reprepare_hint(name, os.path.dirname(path))}") from None
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


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """What a prepared dataset's info says a split holds: its number of examples (None when
  TFDS cannot tell), each feature's per-example shape (None: any length) and numpy dtype,
  and the number of classes of each ClassLabel feature."""
  num_examples: int | None
  features: dict[str, tuple[tuple, np.dtype]]
  classes: dict[str, int]


def split_info(builder, split: str, features) -> SplitInfo:
  """``SplitInfo`` of ``split`` (a slice such as ``train[:90%]`` counts what it selects)."""
  try:
    count = builder.info.splits[split].num_examples
  except (KeyError, ValueError, TypeError, AssertionError):  # not a split: read_split says so
    count = None
  specs, classes, top = {}, {}, builder.info.features
  names = top.keys() if isinstance(top, tfds.features.FeaturesDict) else ()
  for name in features:
    feature = top[name] if name in names else None
    shape, dtype = getattr(feature, "shape", None), getattr(feature, "np_dtype", None)
    if isinstance(shape, tuple) and dtype is not None:  # a tensor, not a nested dict
      specs[name] = (shape, np.dtype(dtype))
    if isinstance(feature, tfds.features.ClassLabel) and feature.num_classes:
      classes[name] = feature.num_classes
  return SplitInfo(count, specs, classes)


def labels_outside(values: np.ndarray, low: int, high: int, shown: int = 5) -> list:
  """The distinct values of ``values`` outside ``low..high`` (the first ``shown``)."""
  values = np.asarray(values)
  if values.size == 0 or (values.min() >= low and values.max() <= high):
    return []
  return np.unique(values[(values < low) | (values > high)])[:shown].tolist()


def mismatches(arrays: dict[str, np.ndarray], info: SplitInfo) -> list[str]:
  """How ``arrays`` differ from what ``info`` says the split holds (empty: they agree)."""
  found = []
  for name, (shape, dtype) in info.features.items():
    if name not in arrays:
      continue
    array = arrays[name]
    if array.dtype != dtype:
      found.append(f"{name} is {array.dtype}, the dataset's is {dtype}")
    elif len(array.shape[1:]) != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape[1:], shape)):
      found.append(f"{name} is {tuple(array.shape[1:])} per example, the dataset's is {shape}")
  for name, count in info.classes.items():
    if name in arrays and arrays[name].dtype.kind in "iu":
      outside = labels_outside(arrays[name], -1, count - 1)  # -1: TFDS's "no label"
      if outside:
        found.append(f"{name} holds {outside}, outside its {count} classes 0..{count - 1}")
  sizes = {len(v) for v in arrays.values()}
  if info.num_examples is not None and sizes and sizes != {info.num_examples}:
    found.append(f"{', '.join(map(str, sorted(sizes)))} examples, the split has "
                 f"{info.num_examples}")
  return found


def load_split(config: ml_collections.ConfigDict, split: str,
               field: str = "split") -> dict[str, np.ndarray]:
  """The whole ``split`` of ``config.name`` as numpy arrays of ``config.features``;
  ``field`` names the config field that chose the split, for error messages. A split read
  once is cached in ``config.cache_dir`` (research/data/cache.py); an entry that disagrees
  with the dataset's info (dtypes, shapes, example count, class labels) is reread."""
  builder = get_builder(config.name, config.data_dir, config.download)  # missing data fails here
  info = split_info(builder, split, config.features)
  path = cache.entry_path(config.get("cache_dir", ""), builder, split, config.features)
  arrays = cache.load(path, config.features) if path else None
  found = mismatches(arrays, info) if arrays is not None else []
  if found:
    logging.warning("The data cache entry %s does not match split %r of dataset %r (%s); "
                    "rereading the split and rewriting the entry.", path, split, config.name,
                    "; ".join(found))
    arrays = None
  if arrays is None:
    arrays = read_split(builder, config, split, field)
    found = mismatches(arrays, dataclasses.replace(info, num_examples=None, features={}))
    if found:  # TFDS writes only labels of its classes: the files were changed since
      raise DatasetUnavailableError(
          f"data.{field}={split!r} of dataset {config.name!r} (read from {builder.data_dir}): "
          f"{'; '.join(found)}; the prepared dataset is damaged; "
          f"{reprepare_hint(config.name, builder.data_dir)}")
    if path:
      cache.save(path, arrays)
  return arrays


def read_split(builder, config: ml_collections.ConfigDict, split: str,
               field: str) -> dict[str, np.ndarray]:
  """``load_split`` through tf.data, without the cache; a prepared file that cannot be read
  (truncated, corrupted, missing) is one line."""
  tf = tensorflow_for_data()
  try:
    dataset = builder.as_dataset(split=split)
  except ValueError as e:
    raise DatasetUnavailableError(
        f"data.{field}={split!r} is not a split of {config.name!r}; it must be one of "
        f"{', '.join(builder.info.splits)} or a slice such as 'train[:90%]' ({e})") from None
  try:
    chunks = list(tfds.as_numpy(dataset.batch(LOAD_CHUNK)))
  except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
    reason = " ".join(re.sub(r"\{\{.*?\}\}|\[Op:.*", "", e.message).split())[:200]
    raise DatasetUnavailableError(
        f"data.{field}={split!r}: the prepared files of dataset {config.name!r} in "
        f"{builder.data_dir} are damaged ({type(e).__name__}: {reason or 'unreadable'}); "
        f"{reprepare_hint(config.name, builder.data_dir)}") from None
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

  Each epoch is a fresh permutation; the last partial batch of an epoch is dropped. With
  ``labelled_batch_size = L > 0`` (semi-supervised data: unlabelled rows have label -1),
  each batch is ``global_batch_size - L`` rows of that permutation of every row followed
  by L rows drawn from the labelled ones alone (at random per step, with replacement only
  when there are fewer than L), so that every step sees labels however few there are.
  """

  def __init__(self, arrays: dict[str, np.ndarray], global_batch_size: int, seed: int,
               labelled_batch_size: int = 0):
    self.arrays = arrays
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.labelled_batch_size = labelled_batch_size
    self.size = num_examples(arrays)
    if not 0 <= labelled_batch_size < global_batch_size:
      raise errors.ConfigError(f"data.labelled_batch_size={labelled_batch_size} must be at "
                               f"least 0 and below the batch size {global_batch_size}")
    self.labelled = (np.flatnonzero(arrays["label"] >= 0) if labelled_batch_size
                     else np.zeros(0, np.int64))
    if labelled_batch_size and not len(self.labelled):
      raise errors.ConfigError("data.labelled_batch_size > 0 needs labelled training rows "
                               "(labels >= 0)")
    self.steps_per_epoch = self.size // (global_batch_size - labelled_batch_size)
    if self.steps_per_epoch == 0:
      raise errors.ConfigError(
          f"batch size {global_batch_size} exceeds the {self.size} training examples")
    self._epoch, self._permutation = None, None

  def with_seed(self, seed: int) -> "TrainBatches":
    """The same batches' shape and data with another seed (a replica's)."""
    return TrainBatches(self.arrays, self.global_batch_size, seed, self.labelled_batch_size)

  def spec(self) -> dict[str, tuple[list[int], str]]:
    """Per-example shape and dtype of each feature."""
    return {k: (list(v.shape[1:]), str(v.dtype)) for k, v in self.arrays.items()}

  def indices(self, step: int) -> np.ndarray:
    """Global example indices of the batch consumed at ``step``."""
    epoch, position = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._epoch, self._permutation = epoch, rng.permutation(self.size)
    size = self.global_batch_size - self.labelled_batch_size
    rows = self._permutation[position * size:(position + 1) * size]
    if not self.labelled_batch_size:
      return rows
    rng = np.random.default_rng([self.seed, step, 1])
    labelled = rng.choice(self.labelled, self.labelled_batch_size,
                          replace=len(self.labelled) < self.labelled_batch_size)
    return np.concatenate([rows, labelled])

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
