"""Serving an export directory (research/serving/export.py) with jax and numpy alone.

    from research.serving import runtime           # or, without the project: the export
    model = runtime.load("workdirs/cnn_digits/export")   # directory's own copy, runtime.py
    probs = model.predict("probs", {"image": images})     # raw uint8 pixels, any batch size
    probs = model.predict("probs", rows)                  # tabular: a list of dicts (or columns)
    probs = model.predict("probs", ["wake me up at 7"])   # text: strings
    model.label_names, model.functions, model.input_spec, model.reference

This module imports only the standard library, numpy and jax (never the project's models,
tasks or training code, nor flax): it is copied into every export directory, so a server
can ``sys.path.insert(0, EXPORT_DIR); import runtime``. The preprocessing that runs on the
host is re-implemented here from the saved JSON files: the tabular transform
(``tabular.json``, as research/data/tabular.py ``transform``) and the tokenizer
(``tokenizer.json``, as research/data/text.py ``Tokenizer.encode``); the rest (pixel
scaling, binarization) is inside the exported functions.
"""
import json
import math
import os
import re

import jax
import numpy as np
from jax import export as jax_export

EXPORT_FILE = "export.json"
PARAMS_FILE = "params.npz"
REFERENCE_FILE = "reference.json"
TABULAR_FILE = "tabular.json"
TOKENIZER_FILE = "tokenizer.json"
_WORD = re.compile(r"\w+|[^\w\s]")
PAD, UNK = "<pad>", "<unk>"


class ExportError(ValueError):
  """An export directory or an input that cannot be served."""


# --- tabular rows (research/data/tabular.py ``transform`` on its saved statistics) ---

def _strings(values) -> np.ndarray:
  out = np.empty(len(values), object)
  for i, v in enumerate(values):
    if isinstance(v, bytes):
      v = v.decode("utf-8")
    out[i] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
  return out


def _floats(values) -> np.ndarray:
  return np.array([np.nan if v is None or v == "" else float(v) for v in values], np.float64)


def columns_of(rows, names) -> dict:
  """Rows (a list of dicts, a field missing or None where unknown) as columns; columns
  (a dict of sequences) pass through."""
  if isinstance(rows, dict):
    return rows
  return {name: [row.get(name) for row in rows] for name in names}


def tabular_transform(stats: dict, arrays: dict) -> np.ndarray:
  """The ``features`` matrix (N, D) float32 of raw columns, from ``tabular.json``."""
  spec = stats["settings"]
  columns = [c["column"] for c in stats["numeric"]] + [c["column"] for c in stats["categorical"]]
  arrays = columns_of(arrays, columns)
  size = len(arrays[columns[0]]) if columns else 0
  parts = []
  for c in stats["numeric"]:
    column = _floats(arrays.get(c["column"], [None] * size))
    column = np.where(np.isnan(column), c["fill"], column)
    if c["clip"] is not None:
      column = np.clip(column, *c["clip"])
    parts.append(((column - c["mean"]) / c["scale"])[:, None])
  for c in stats["categorical"]:
    values = _strings(arrays.get(c["column"], [None] * size))
    values[values == ""] = c["fill"]
    index = {v: i for i, v in enumerate(c["categories"])}
    codes = np.array([index.get(v, -1) for v in values], np.int64)
    if (codes < 0).any() and spec.get("unknown_category") == "error":
      raise ExportError(f"column {c['column']!r} has value(s) {sorted(set(values[codes < 0]))[:5]} "
                        f"that the training split never had (it had {c['categories']})")
    if spec.get("one_hot", True):
      block = np.zeros((size, len(c["categories"])))
      known = codes >= 0
      block[np.nonzero(known)[0], codes[known]] = 1.0
      parts.append(block)
    else:
      parts.append(codes[:, None].astype(np.float64))
  return (np.concatenate(parts, axis=1) if parts else np.zeros((size, 0))).astype(np.float32)


# --- text (research/data/text.py ``Tokenizer.encode`` on its saved vocabulary) ---

def words(text) -> list[str]:
  if isinstance(text, bytes):
    text = text.decode("utf-8")
  return _WORD.findall(text.lower())


def tokenize(saved: dict, texts) -> tuple[np.ndarray, np.ndarray]:
  """Token ids (N, max_length) int32, 0-padded, and valid lengths (N,), from ``tokenizer.json``."""
  ids = {w: i for i, w in enumerate(saved["vocab"])}
  max_length, unk = saved["max_length"], ids[UNK]
  tokens = np.zeros((len(texts), max_length), np.int32)
  lengths = np.zeros(len(texts), np.int32)
  for i, text in enumerate(texts):
    found = [ids.get(w, unk) for w in words(text)][:max_length]
    tokens[i, :len(found)], lengths[i] = found, len(found)
  return tokens, lengths


# --- the exported model ---

class Served:
  """An export directory, loaded: ``predict(name, raw_inputs, rng=None)``."""

  def __init__(self, directory: str):
    self.directory = directory
    path = os.path.join(directory, EXPORT_FILE)
    if not os.path.exists(path):
      raise ExportError(f"no {EXPORT_FILE} in {directory}: not an export directory")
    with open(path) as f:
      self.meta = json.load(f)
    self.functions = tuple(self.meta["functions"])
    self.input_spec = {k: (tuple(s), d) for k, (s, d) in self.meta["inputs"].items()}
    self.label_names = self.meta.get("label_names")
    with np.load(os.path.join(directory, PARAMS_FILE)) as npz:  # numpy refuses object arrays
      self.params = [npz[f"p{i:05d}"] for i in range(self.meta["num_params"])]
    for i, dtype in enumerate(self.meta.get("param_dtypes", ())):
      if str(self.params[i].dtype) != dtype:  # bfloat16 and other non-numpy types: their bits
        self.params[i] = self.params[i].view(jax.numpy.dtype(dtype))
    self.preprocessing = {}
    for kind, name in self.meta.get("preprocessing", {}).items():
      with open(os.path.join(directory, name)) as f:
        self.preprocessing[kind] = json.load(f)
    reference = os.path.join(directory, REFERENCE_FILE)
    self.reference = None
    if os.path.exists(reference):
      with open(reference) as f:
        self.reference = json.load(f)
    self._exported, self._compiled, self._device_params = {}, {}, None

  def exported(self, name: str) -> jax_export.Exported:
    if name not in self.functions:
      raise ExportError(f"no exported function {name!r}; there are {list(self.functions)}")
    if name not in self._exported:
      with open(os.path.join(self.directory, f"{name}.jax"), "rb") as f:
        self._exported[name] = jax_export.deserialize(bytearray(f.read()))
    return self._exported[name]

  def encode(self, raw) -> dict:
    """Raw inputs as the exported functions take them: tabular rows through
    ``tabular.json``, texts through ``tokenizer.json``, arrays cast to the input spec."""
    if "tabular" in self.preprocessing:
      return {"features": tabular_transform(self.preprocessing["tabular"], raw)}
    if "tokenizer" in self.preprocessing:
      texts = raw[self.meta["text_feature"]] if isinstance(raw, dict) else raw
      tokens, lengths = tokenize(self.preprocessing["tokenizer"], list(texts))
      return {k: v for k, v in (("tokens", tokens), ("length", lengths)) if k in self.input_spec}
    if not isinstance(raw, dict):
      raise ExportError(f"inputs are a dict of arrays {sorted(self.input_spec)}")
    out = {}
    for name, (shape, dtype) in self.input_spec.items():
      if name not in raw:
        raise ExportError(f"missing input {name!r}; the model takes {sorted(self.input_spec)}")
      value = np.asarray(raw[name])
      if value.shape[1:] != shape:
        raise ExportError(f"input {name!r} is {value.shape[1:]} per example; the model takes "
                          f"{shape} {dtype}")
      out[name] = value.astype(dtype)
    return out

  def compiled(self, name: str):
    """Function ``name`` jitted: compiled once per batch size, the parameters kept on the
    device between calls."""
    if name not in self._compiled:
      self._compiled[name] = jax.jit(self.exported(name).call)
    if self._device_params is None:
      self._device_params = jax.device_put(self.params)
    return self._compiled[name]

  def call(self, name: str, inputs: dict, rng=None):
    """Function ``name`` on inputs already encoded (``encode``), as numpy."""
    if rng is None:
      rng = self.meta["eval_key"]
    elif jax.dtypes.issubdtype(jax.numpy.asarray(rng).dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)  # a typed key: its uint32 data
    out = self.compiled(name)(self._device_params, inputs, np.asarray(rng, np.uint32))
    return jax.tree.map(np.asarray, out)

  def predict(self, name: str, raw, rng=None):
    """Function ``name`` on a batch of raw inputs (numpy). ``rng``: the uint32 (2,) key of
    random preprocessing (dynamic binarization) and sampling; default the run's
    evaluation key, as research/train/restore.py uses. A VAE's functions see each example
    alone with that key (research/serving/export.py ``per_example``): an output never
    depends on the other examples of the batch."""
    return self.call(name, self.encode(raw), rng)


def load(directory: str) -> Served:
  """The export in ``directory``."""
  return Served(directory)
