"""Splits read through TFDS, kept as uncompressed ``.npz`` files so later runs load them
with numpy alone (no tf.data, no TensorFlow import).

An entry is named by a hash of everything that could change its content: the dataset's
full name and version, its prepared folder, that folder's ``dataset_info.json`` (contents
and modification time), the split and the features. Entries are written to a temporary
file and renamed into place, so concurrent processes never read half a file. Byte-string
features (text) are stored as one byte buffer plus end offsets: no Python objects.

A readable entry is still not trusted: research/data/pipeline.py ``load_split`` compares its
dtypes, per-example shapes, example count and class labels with the dataset's info, and
rereads (and rewrites) an entry that differs. Only a split read whole is written.
"""
import hashlib
import json
import os
import uuid
import zipfile

import numpy as np
from absl import logging

INFO_FILE = "dataset_info.json"


def entry_path(cache_dir: str, builder, split: str, features) -> str | None:
  """Where the cache keeps ``split`` of ``builder``'s prepared dataset; None when caching is
  off (``cache_dir`` empty) or the dataset has no info file to key it by (e.g. mock data)."""
  info = builder.data_path / INFO_FILE
  if not cache_dir or not info.exists():
    return None
  key = json.dumps({
      "dataset": builder.info.full_name, "version": str(builder.version),
      "data_dir": os.fspath(builder.data_path), "info_mtime": info.stat().mtime,
      "info_sha256": hashlib.sha256(info.read_bytes()).hexdigest(),
      "split": split, "features": list(features)})
  digest = hashlib.sha256(key.encode()).hexdigest()[:24]
  name = f"{builder.info.full_name.replace('/', '-')}-{digest}.npz"
  return os.path.join(os.path.expanduser(cache_dir), name)


def load(path: str, features) -> dict[str, np.ndarray] | None:
  """The cached arrays of ``features``; None when there is no (readable) entry."""
  try:
    with np.load(path) as entry:  # plain arrays only: numpy refuses object arrays
      return {name: _unpack(entry, name) for name in features}
  except FileNotFoundError:
    return None
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    logging.warning("Ignoring the unreadable data cache entry %s (%s); rereading the split.",
                    path, e)
    return None


def save(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes ``arrays`` atomically; a failure (full disk, read-only folder) only warns."""
  packed = {}
  for name, array in arrays.items():
    if array.dtype != object:
      packed[name] = array
    elif all(isinstance(v, bytes) for v in array.flat):
      packed.update(_pack_bytes(name, array))
    else:
      logging.info("Not caching %s: feature %r holds Python objects.", path, name)
      return
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"  # unique per process and host
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "xb") as f:
      np.savez(f, **packed)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("Cannot write the data cache entry %s (%s); continuing without it.", path, e)
    if os.path.exists(tmp):
      os.remove(tmp)


def _pack_bytes(name: str, array: np.ndarray) -> dict[str, np.ndarray]:
  values = list(array.flat)
  return {f"{name}#bytes": np.frombuffer(b"".join(values), np.uint8),
          f"{name}#ends": np.cumsum([len(v) for v in values], dtype=np.int64),
          f"{name}#shape": np.asarray(array.shape, np.int64)}


def _unpack(entry, name: str) -> np.ndarray:
  if name in entry.files:
    return entry[name]
  buffer, ends = entry[f"{name}#bytes"].tobytes(), entry[f"{name}#ends"]
  starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
  values = np.empty(len(ends), object)
  values[:] = [buffer[a:b] for a, b in zip(starts, ends)]
  return values.reshape(tuple(entry[f"{name}#shape"]))
