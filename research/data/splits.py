"""A run's data by name: its own splits (``train``, ``val``, ``test``) or any other dataset
an evaluation asks for, each read once, text encoded by the run's tokenizer, tabular
columns by its fitted preprocessing (research/data/tabular.py).

    data = splits.RunData(config.data, workdir, batch_size=config.eval_batch_size)
    data.arrays("train")                                  # host numpy arrays
    data.batches("val", batch_sharding)                   # device-resident masked batches
    data.batches(ConfigDict(name="fashion_mnist", split="test"), batch_sharding)

A spec that is a ConfigDict changes those fields of the run's ``config.data`` (its
preprocessing, features and cache stay the run's unless named) and reads its ``split``.

With ``config.data.folds.num_folds = K > 1`` the run's ``train`` and ``val`` are fold
``folds.fold`` of a stratified K-fold partition of its ``train_split`` (``fold_rows``;
``val_split`` is not read): cross-validation inside the training split, the test split
untouched.

With ``config.data.train_labels`` (class ids, e.g. ``(0,)``), ``train`` and ``val`` keep only
the rows of those classes (one-class training; the tokenizer or tabular fit sees them alone);
``test`` and other datasets keep every row. ``RunData.with_train_labels`` is the same data
with other such classes (a replica's, research/train/replicas.py), sharing what they read
alike: the raw splits, and the splits the classes do not filter.

With ``config.data.labelled_per_class = N > 0`` (semi-supervised learning), the run's
``train`` keeps the labels of a balanced subset, N examples of each class drawn without
replacement with ``data.labelled_seed`` (``labelled_rows``), and every other training row's
label becomes -1 (unlabelled), or with ``data.labelled_only`` the other rows are left out (a
supervised baseline on the same subset); ``val`` and ``test`` keep theirs. The rows are recorded in
``WORKDIR/labelled.json`` (``record_labelled``) and checked there on every later start.
"""
import json
import os

import ml_collections
import numpy as np

from research import errors
from research.core import sharding
from research.data import pipeline, tabular, text

OWN_SPLITS = ("train", "val", "test")
LABELLED_FILE = "labelled.json"
UNLABELLED = -1  # the label of a training row outside the labelled subset


def spec_of(arrays: dict) -> dict[str, tuple[tuple[int, ...], str]]:
  """Per-example shape and dtype of each feature."""
  return {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in arrays.items()}


def check_spec(found: dict, trained: dict, workdir: str) -> None:
  """Data must have the shapes and dtypes the model in ``workdir`` was trained on."""
  for name, (shape, dtype) in found.items():
    if name in trained and (tuple(shape), dtype) != (tuple(trained[name][0]), trained[name][1]):
      raise errors.ConfigError(
          f"the data's {name} is {tuple(shape)} {dtype}, but the model in {workdir} was "
          f"trained on {tuple(trained[name][0])} {trained[name][1]}; use the dataset and "
          f"preprocessing it was trained with, or another --workdir")


def folds_config(num_folds: int, fold: int, seed: int = 0,
                 label: str = "") -> ml_collections.ConfigDict:
  """``config.data.folds`` of a cross-validation run (studies/search sets it on its fold
  runs; other runs have no such field): train and val become fold ``fold`` of a stratified
  ``num_folds``-fold partition of train_split (whose val_split is then unread), shuffled by
  ``seed`` and stratified by the feature ``label`` ("": the label)."""
  return ml_collections.ConfigDict(dict(num_folds=num_folds, fold=fold, seed=seed, label=label))


def fold_rows(labels: np.ndarray, folds: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """``{"train": rows, "val": rows}`` of fold ``folds.fold`` of a StratifiedKFold of
  ``labels`` into ``folds.num_folds`` parts, shuffled by ``folds.seed``: each example is
  in the ``val`` rows of exactly one fold."""
  from sklearn import model_selection
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise errors.ConfigError(f"data.folds: the label feature has shape {labels.shape[1:]} per "
                             f"example; stratified folds need one class per example")
  splitter = model_selection.StratifiedKFold(folds.num_folds, shuffle=True,
                                             random_state=folds.seed)
  train, val = list(splitter.split(np.zeros(len(labels)), labels))[folds.fold]
  return {"train": train, "val": val}


def fold_label(config: ml_collections.ConfigDict) -> str:
  """The feature the folds are stratified by: ``folds.label``, else ``label``, else a text
  dataset's one label feature."""
  folds = config.folds
  if folds.get("label"):
    return folds.label
  if "label" in config.features:
    return "label"
  labels = tuple(config.text.labels) if text.is_text(config) else ()
  if len(labels) == 1:
    return labels[0]
  raise errors.ConfigError(f"data.folds.label='' names no feature: the data has no 'label' "
                           f"feature; set it to one of {tuple(config.features)}")


def uses_folds(config: ml_collections.ConfigDict) -> bool:
  return config.get("folds") is not None and config.folds.num_folds > 1


def only_labels(raw: dict, labels) -> dict:
  """The rows of ``raw`` whose ``label`` is one of ``labels`` (``data.train_labels``: the
  run's ``train`` and ``val`` keep only these classes, e.g. one-class training; ``test``
  and other datasets keep every row)."""
  keep = np.isin(raw["label"], np.asarray(tuple(labels)))
  return {k: v[keep] for k, v in raw.items()}


def encoder(config: ml_collections.ConfigDict, workdir: str | None, train_raw: dict | None):
  """``encode(raw_arrays) -> arrays``: the run's tabular preprocessing (research/data/tabular.py)
  or tokenizer (research/data/text.py), fitted on ``train_raw`` (the raw ``train`` split) and
  saved in ``workdir`` on a first run, else read from there; the identity for other data."""
  if tabular.is_tabular(config):
    return tabular.encoder(config, workdir, train_raw)
  train_texts = train_raw[config.text.feature] if text.is_text(config) and \
      train_raw is not None else None
  return text.encoder(config, workdir, train_texts)


def labelled_per_class(config: ml_collections.ConfigDict) -> int:
  """N of a semi-supervised run's labelled subset; 0: every training label is kept."""
  return int(config.get("labelled_per_class", 0) or 0)


def labelled_rows(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """The sorted rows of a balanced subset: ``per_class`` rows of each class in ``labels``,
  drawn without replacement, reproducibly from ``seed``."""
  labels = np.asarray(labels)
  rng = np.random.default_rng([seed, per_class])
  rows = []
  for c in np.unique(labels[labels >= 0]):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise errors.ConfigError(f"data.labelled_per_class={per_class}: class {int(c)} has only "
                               f"{len(members)} training examples")
    rows.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(rows))


def hide_labels(raw: dict, rows: np.ndarray) -> dict:
  """``raw`` with every label outside ``rows`` replaced by UNLABELLED."""
  labels = np.full_like(raw["label"], UNLABELLED)
  labels[rows] = raw["label"][rows]
  return {**raw, "label": labels}


def record_labelled(workdir: str, config: ml_collections.ConfigDict, rows: np.ndarray) -> None:
  """Writes the labelled subset to ``WORKDIR/labelled.json``, or checks that the one there
  is the same (the same data, N and seed give the same rows)."""
  path = os.path.join(workdir, LABELLED_FILE)
  record = {"train_split": config.train_split, "labelled_per_class": labelled_per_class(config),
            "labelled_seed": int(config.get("labelled_seed", 0)), "rows": rows.tolist()}
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != record:
        raise errors.UserError(f"{path} records another labelled subset than this run draws "
                               f"(changed data, labelled_per_class or labelled_seed): use "
                               f"another --workdir")
    return
  with open(path, "w") as f:
    json.dump(record, f)


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
  """A classifier of ``num_classes`` classes needs every label in ``0..num_classes - 1``;
  ``where`` names the split (e.g. ``data.train_split='train[:90%]' of 'digits'``)."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.dtype.kind not in "iu":  # multi-hot labels: not class ids
    return
  outside = pipeline.labels_outside(labels, 0, num_classes - 1)
  if not outside:
    return
  fixes = []
  if labels.max() >= num_classes:
    fixes.append(f"set model.num_classes to at least {int(labels.max()) + 1}")
  if labels.min() < 0:
    fixes.append("leave out the unlabeled examples (negative labels; TFDS writes -1)")
  raise errors.UserError(
      f"{where} has label(s) {outside} outside the classifier's model.num_classes="
      f"{num_classes} (labels 0..{num_classes - 1}); {' and '.join(fixes)}, or use data "
      f"whose labels fit")


class RunData:
  """``trained_spec``, when given, is what every dataset read must match (``check_spec``);
  ``num_classes``, when given (a classifier's), bounds every split's ``label``
  (``check_labels``)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, eval_batch_size: int,
               trained_spec: dict | None = None, num_classes: int | None = None):
    self.config, self.workdir, self.eval_batch_size = config, workdir, eval_batch_size
    self.trained_spec, self.num_classes = trained_spec, num_classes
    self._arrays, self._batches, self._encode = {}, {}, None
    self._fold_source = None  # with folds: (the raw train split, each fold part's rows)
    self._raw = None  # raw splits by ``_key(spec, raw=True)``: kept once views share them
    self.labelled = None  # semi-supervised: the rows of the train split that keep their label

  def with_train_labels(self, labels) -> "RunData":
    """This data as a run with ``data.train_labels=labels`` reads it: its ``train`` and
    ``val`` keep those classes. It shares this one's caches, so each raw split is read once
    and the splits that the classes do not filter (``test``, other datasets) are the same
    arrays and device batches."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.train_labels = tuple(labels)
    view = RunData(config, self.workdir, self.eval_batch_size, self.trained_spec,
                   self.num_classes)
    if self._raw is None:
      self._raw = {}
    view._arrays, view._batches, view._raw = self._arrays, self._batches, self._raw
    return view

  def resolve(self, spec) -> tuple[ml_collections.ConfigDict, str, str]:
    """``(data config, split, field naming the split)`` of a spec."""
    if isinstance(spec, str):
      if spec not in OWN_SPLITS:
        raise errors.ConfigError(f"data spec {spec!r} is not allowed; it must be one of "
                                 f"{OWN_SPLITS} or a ConfigDict of data fields with a split")
      return self.config, self.config[f"{spec}_split"], f"{spec}_split"
    fields = spec.to_dict()
    if "split" not in fields:
      raise errors.ConfigError(f"data spec {fields} names no split")
    split = fields.pop("split")
    config = self.config.copy_and_resolve_references()
    unknown = sorted(set(fields) - set(config))
    if unknown:
      raise errors.ConfigError(f"data spec {spec.to_dict()}: no data field {unknown[0]!r}; "
                               f"the fields are {sorted(config)}")
    config.update(fields)
    return config, split, "split"

  def describe(self, spec) -> str:
    """The config field and dataset of ``spec``, for messages."""
    config, split, field = self.resolve(spec)
    fold = f" (fold {self.config.folds.fold}'s {spec} part)" if self._folded(spec) else ""
    return f"data.{field}={split!r}{fold} of {config.name!r}"

  def _key(self, spec, raw: bool = False) -> str:
    """What identifies the arrays of ``spec`` (``raw``: its rows before ``train_labels``
    filter them): the data fields, less ``train_labels`` where they filter nothing, the
    split and the fold."""
    config, split, _ = self.resolve(spec)
    fields = json.loads(config.to_json_best_effort())
    if raw or not self._keeps_train_labels(spec):
      fields.pop("train_labels", None)
    fold = spec if self._folded(spec) else None
    return json.dumps([fields, split, fold], sort_keys=True)

  def _folded(self, spec) -> bool:
    return isinstance(spec, str) and spec in ("train", "val") and uses_folds(self.config)

  def _keeps_train_labels(self, spec) -> bool:
    """Whether ``spec`` keeps only the rows of ``train_labels``: the run's train and val."""
    return isinstance(spec, str) and spec != "test" and bool(self.config.get("train_labels"))

  def _load(self, spec) -> dict:
    """The raw split of ``spec`` (read once where views share it, ``with_train_labels``)."""
    if self._raw is None:
      return self._read(spec)
    key = self._key(spec, raw=True)
    if key not in self._raw:
      self._raw[key] = self._read(spec)
    return self._raw[key]

  def _read(self, spec) -> dict:
    """The raw split of ``spec``; with folds, the fold's rows of the train split (read once)."""
    if not self._folded(spec):
      config, split, field = self.resolve(spec)
      return pipeline.load_split(config, split, field)
    if self._fold_source is None:
      raw = pipeline.load_split(self.config, self.config.train_split, "train_split")
      label = fold_label(self.config)
      if label not in raw:
        raise errors.ConfigError(f"data.folds.label={label!r} is not a feature of the data; "
                                 f"it has {sorted(raw)}")
      self._fold_source = raw, fold_rows(raw[label], self.config.folds)
    raw, rows = self._fold_source
    return {k: v[rows[spec]] for k, v in raw.items()}

  def arrays(self, spec, any_labels: bool = False) -> dict:
    """The whole split as host arrays (text encoded); ``any_labels``: its labels need not
    be the classifier's classes (out-of-distribution data, e.g. CLINC150's out-of-scope
    queries, labelled 150)."""
    key = self._key(spec)
    if key not in self._arrays:
      raw = self._load(spec)
      if self._keeps_train_labels(spec):
        raw = only_labels(raw, self.config.train_labels)  # one-class training
      if spec == "train" and labelled_per_class(self.config):
        self.labelled = labelled_rows(raw["label"], labelled_per_class(self.config),
                                      int(self.config.get("labelled_seed", 0)))
        raw = ({k: v[self.labelled] for k, v in raw.items()}
               if self.config.get("labelled_only") else hide_labels(raw, self.labelled))
      if self._encode is None:  # the run's training split fits its encoder on a first run
        self._encode = encoder(self.config, self.workdir, raw if spec == "train" else None)
      arrays = self._encode(raw)
      if self.trained_spec is not None:
        check_spec(spec_of(arrays), self.trained_spec, self.workdir)
      self._arrays[key] = arrays
    arrays = self._arrays[key]
    if self.num_classes and "label" in arrays and not any_labels:
      labels = arrays["label"]
      if spec == "train" and labelled_per_class(self.config):
        labels = labels[labels != UNLABELLED]
      check_labels(labels, self.num_classes, self.describe(spec))
    return arrays

  def batches(self, spec, batch_sharding, any_labels: bool = False) -> list[dict]:
    """Fixed-size masked batches over the whole split, on the devices (research/data/pipeline.py
    ``eval_batches``); ``any_labels`` as in ``arrays``."""
    key = self._key(spec)
    arrays = self.arrays(spec, any_labels)
    if key not in self._batches:
      self._batches[key] = [sharding.to_global_array(b, batch_sharding) for b in
                            pipeline.eval_batches(arrays, self.eval_batch_size)]
    return self._batches[key]
