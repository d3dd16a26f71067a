"""Tabular features: preprocessing fitted on the run's training split, saved as JSON in the
workdir, and the host-side encoding of whole splits into one float32 vector per row.

``config.data.tabular`` names the columns and the ops (configs/common.py ``tabular_dataset``):
  numeric             columns of numbers, NaN where missing
  categorical         columns of strings, "" (or None/NaN) where missing
  impute_numeric      median | mean | most_frequent   (scikit-learn SimpleImputer)
  impute_categorical  most_frequent | constant ("<missing>" becomes a category of its own)
  clip_quantiles      () or (low, high): after imputation, each numeric column is clipped to
                      these quantiles of its training values (outliers)
  standardize         numeric columns to zero mean, unit variance (StandardScaler; a
                      constant column is only centred)
  one_hot             categorical columns one-hot (OneHotEncoder, categories sorted); False:
                      one float column of category codes 0..K-1 each
  unknown_category    ignore | error: a category the training split never had: ``ignore``
                      encodes it as all zeros (one-hot; code -1 without one-hot), as
                      OneHotEncoder(handle_unknown="ignore") does; ``error`` stops with
                      one line naming the column and the value
A split becomes
  ``features``  float32 (D,): the numeric columns, in order, then each categorical column's
                one-hot block (or code); the names of the D entries are in the JSON
  every other feature (``label``) unchanged.
A missing value becomes its column's imputed training statistic, so a row with every
value missing is encoded to finite numbers like any other.

The fit runs on a first start, on the rows of the run's ``train`` split alone (with
``data.folds``, the fold's training rows); its statistics are saved as readable JSON,
``WORKDIR/tabular.json`` (plain JSON), and every later run in that workdir (resume,
``--mode=eval``, research/train/restore.py) applies them from that file: they are never
refitted on other data. A config whose tabular fields disagree with the saved file is one
line. The statistics come from scikit-learn's fitted estimators; applying them is plain
numpy on the saved numbers (tests/test_tabular.py checks it against scikit-learn's own
transform).
"""
import json
import math
import os

import jax
import ml_collections
import numpy as np

from research import errors

TABULAR_FILE = "tabular.json"
OUTPUT = "features"
MISSING = "<missing>"  # the category of a missing value with impute_categorical=constant
NUMERIC_IMPUTERS = ("median", "mean", "most_frequent")
CATEGORICAL_IMPUTERS = ("most_frequent", "constant")
UNKNOWN = ("ignore", "error")
FIELDS = ("numeric", "categorical", "impute_numeric", "impute_categorical", "clip_quantiles",
          "standardize", "one_hot", "unknown_category")


def is_tabular(config: ml_collections.ConfigDict) -> bool:
  """Whether the data config (``config.data``) reads tabular columns."""
  return "tabular" in config and bool(tuple(config.tabular.numeric) +
                                      tuple(config.tabular.categorical))


def _strings(values) -> np.ndarray:
  """A column as str objects, "" where missing (None, NaN, empty)."""
  out = np.empty(len(values), object)
  for i, v in enumerate(values):
    if isinstance(v, bytes):
      v = v.decode("utf-8")
    out[i] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
  return out


def _numbers(arrays: dict, columns) -> np.ndarray:
  return np.stack([np.asarray(arrays[c], np.float64) for c in columns], axis=1)


def fit(arrays: dict, spec: ml_collections.ConfigDict) -> dict:
  """The statistics of every column, fitted by scikit-learn on ``arrays`` (training rows):
  a JSON-ready dict (what ``tabular.json`` holds besides the settings)."""
  from sklearn import impute, preprocessing
  size = len(next(iter(arrays.values())))
  stats = {"train_rows": int(size), "numeric": [], "categorical": []}
  if spec.numeric:
    x = _numbers(arrays, spec.numeric)
    imputer = impute.SimpleImputer(strategy=spec.impute_numeric, keep_empty_features=True)
    x = imputer.fit_transform(x)
    low = high = None
    if tuple(spec.clip_quantiles):
      low, high = (np.quantile(x, q, axis=0) for q in spec.clip_quantiles)
      x = np.clip(x, low, high)
    mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    if spec.standardize:
      scaler = preprocessing.StandardScaler().fit(x)
      mean, scale = scaler.mean_, scaler.scale_
    for j, column in enumerate(spec.numeric):
      stats["numeric"].append({
          "column": column, "fill": float(imputer.statistics_[j]),
          "clip": None if low is None else [float(low[j]), float(high[j])],
          "mean": float(mean[j]), "scale": float(scale[j])})
  if spec.categorical:
    x = np.stack([_strings(arrays[c]) for c in spec.categorical], axis=1)
    imputer = impute.SimpleImputer(missing_values="", strategy=spec.impute_categorical,
                                   fill_value=MISSING, keep_empty_features=True)
    x = imputer.fit_transform(x)
    encoder = preprocessing.OneHotEncoder(handle_unknown="ignore").fit(x)
    for j, column in enumerate(spec.categorical):
      stats["categorical"].append({
          "column": column, "fill": str(imputer.statistics_[j]),
          "categories": [str(c) for c in encoder.categories_[j]]})
  stats["features"] = output_names(stats, spec.one_hot)
  return stats


def output_names(stats: dict, one_hot: bool) -> list[str]:
  """What each entry of the ``features`` vector is: a numeric column, or ``column=category``."""
  names = [c["column"] for c in stats["numeric"]]
  for c in stats["categorical"]:
    names += [f"{c['column']}={v}" for v in c["categories"]] if one_hot else [c["column"]]
  return names


def transform(stats: dict, arrays: dict, spec: ml_collections.ConfigDict) -> np.ndarray:
  """The ``features`` matrix (N, D) float32 of ``arrays`` from the saved ``stats``."""
  size = len(next(iter(arrays.values())))
  parts = []
  if stats["numeric"]:
    x = _numbers(arrays, [c["column"] for c in stats["numeric"]])
    for j, c in enumerate(stats["numeric"]):
      column = np.where(np.isnan(x[:, j]), c["fill"], x[:, j])
      if c["clip"] is not None:
        column = np.clip(column, *c["clip"])
      parts.append(((column - c["mean"]) / c["scale"])[:, None])
  for c in stats["categorical"]:
    values = _strings(arrays[c["column"]])
    values[values == ""] = c["fill"]
    index = {v: i for i, v in enumerate(c["categories"])}
    codes = np.array([index.get(v, -1) for v in values], np.int64)
    if (codes < 0).any():
      unknown = sorted(set(values[codes < 0]))
      if spec.unknown_category == "error":
        raise errors.UserError(
            f"data.tabular: column {c['column']!r} has value(s) {unknown[:5]} that the "
            f"training split never had (it had {c['categories']}); "
            f"--config.data.tabular.unknown_category=ignore encodes them as all zeros")
    if spec.one_hot:
      block = np.zeros((size, len(c["categories"])))
      known = codes >= 0
      block[np.nonzero(known)[0], codes[known]] = 1.0
      parts.append(block)
    else:
      parts.append(codes[:, None].astype(np.float64))
  return (np.concatenate(parts, axis=1) if parts else np.zeros((size, 0))).astype(np.float32)


def settings(config: ml_collections.ConfigDict) -> dict:
  """What the statistics were fitted from; a saved file must match these."""
  spec = config.tabular
  found = {"dataset": config.name, "train_split": config.train_split}
  folds = config.get("folds")
  if folds is not None and folds.num_folds > 1:
    found["folds"] = folds.to_dict()
  for field in FIELDS:
    value = spec[field]
    found[field] = list(value) if isinstance(value, (tuple, list)) else value
  return found


def load_or_fit(config: ml_collections.ConfigDict, train_arrays, workdir: str | None) -> dict:
  """The workdir's statistics; on a first run, fitted on ``train_arrays`` and saved. Without
  a workdir (``None`` or ""), fitted and kept in memory only."""
  wanted = settings(config)
  path = os.path.join(workdir, TABULAR_FILE) if workdir else None
  if path and os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    saved_settings = saved["settings"]
    changed = sorted(k for k in set(wanted) | set(saved_settings)
                     if saved_settings.get(k) != wanted.get(k))
    if changed:
      raise errors.ConfigError(
          f"{path} was fitted with "
          f"{', '.join(f'{k}={saved_settings.get(k)!r}' for k in changed)}, but the config "
          f"asks for {', '.join(f'{k}={wanted.get(k)!r}' for k in changed)}; use the settings "
          f"it was trained with, or another --workdir")
    return saved
  if train_arrays is None:
    raise errors.UserError(f"no {TABULAR_FILE} in {workdir}: the run that trained there did "
                           f"not finish its first start")
  stats = {"settings": wanted, **fit(train_arrays, config.tabular)}
  if path and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      json.dump(stats, f, indent=1)
  return stats


def encoder(config: ml_collections.ConfigDict, workdir: str | None, train_arrays=None):
  """``encode(raw_arrays) -> arrays`` with the workdir's statistics, fitted on
  ``train_arrays`` (the training split's raw arrays) and saved on a first run. Without
  ``train_arrays`` (a restored run) the statistics must be in the workdir."""
  stats = load_or_fit(config, train_arrays, workdir)
  columns = set(config.tabular.numeric) | set(config.tabular.categorical)

  def encode(arrays: dict) -> dict:
    out = {k: v for k, v in arrays.items() if k not in columns}
    out[OUTPUT] = transform(stats, arrays, config.tabular)
    return out
  return encode


def validate_config(config: ml_collections.ConfigDict) -> None:
  """The tabular fields (``config.data.tabular``) of a config that reads tabular data."""
  if not is_tabular(config.data):
    return
  data, spec = config.data, config.data.tabular
  features = tuple(data.features)
  for field in ("numeric", "categorical"):
    columns = tuple(spec[field])
    errors.require(all(c in features and c != "label" for c in columns), f"data.tabular.{field}",
                   columns, f"columns of data.features {features} (not the label)")
  both = sorted(set(spec.numeric) & set(spec.categorical))
  errors.require(not both, "data.tabular.categorical", tuple(spec.categorical),
                 f"columns that are not also numeric (both: {both})")
  errors.require(spec.impute_numeric in NUMERIC_IMPUTERS, "data.tabular.impute_numeric",
                 spec.impute_numeric, f"one of {NUMERIC_IMPUTERS}")
  errors.require(spec.impute_categorical in CATEGORICAL_IMPUTERS,
                 "data.tabular.impute_categorical", spec.impute_categorical,
                 f"one of {CATEGORICAL_IMPUTERS}")
  clip = tuple(spec.clip_quantiles)
  errors.require(clip == () or (len(clip) == 2 and all(isinstance(q, (int, float)) for q in clip)
                                and 0 <= clip[0] < clip[1] <= 1),
                 "data.tabular.clip_quantiles", clip, "() or (low, high) with 0 <= low < high <= 1")
  for field in ("standardize", "one_hot"):
    errors.require(isinstance(spec[field], bool), f"data.tabular.{field}", spec[field],
                   "True or False")
  errors.require(spec.unknown_category in UNKNOWN, "data.tabular.unknown_category",
                 spec.unknown_category, f"one of {UNKNOWN}")
  errors.require(not ("text" in data and data.text.feature), "data.text.feature",
                 data.get("text", {}).get("feature"), "'' for a tabular dataset")
  inputs = tuple(config.task.get("inputs", ("image",)))
  errors.require(inputs == (OUTPUT,), "task.inputs", inputs,
                 f"({OUTPUT!r},): what a tabular dataset feeds the model")
