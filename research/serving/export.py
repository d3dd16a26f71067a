"""A finished workdir as an export directory that a server loads without the project's
model code (research/serving/runtime.py: jax and numpy alone).

    python launch.py --mode=export --workdir=WD [--export_dir=DIR]   # default WD/export
    export.export("workdirs/cnn_digits")                              # the same, in Python

EXPORT_DIR holds
  NAME.jax        each prediction function, ``jax.export``-serialised with a symbolic batch
                  dimension ``b``: ``f(params, inputs, key) -> outputs``, where ``params``
                  is the list of parameter arrays (``params.npz``), ``inputs`` the model's
                  inputs by name (before the config's ``data.preprocess``: raw pixels, token
                  ids, tabular feature vectors; pixel scaling and binarization run inside),
                  ``key`` a uint32 (2,) PRNG key (random preprocessing and sampling).
                  Classifiers: probs, logits, features; VAEs: elbo and nll (the config's
                  ``evals.nll`` num_samples and chunk).
  params.npz      the parameter (and model state) arrays p00000, p00001, ... (plain arrays), in
                  the functions' order; their tree paths are in export.json
  export.json     config name, step, functions (input and output shapes), the input spec,
                  label names, preprocessing files, the platforms exported for, the default key
  tabular.json / tokenizer.json   the workdir's host-side preprocessing, for raw rows or texts
  reference.json  what a drift monitor compares live traffic with, from the validation split:
                  the score (classifiers: the max probability's log-odds; VAEs: -ELBO) as a sample,
                  quantiles and decile bins; the predicted classes' fractions; per input
                  column (tabular) or per input (its per-example mean) the same bins
  runtime.py      a copy of research/serving/runtime.py (``import runtime`` from the folder)
  saved_model/    a TF SavedModel of the same functions (jax2tf), signatures per function
                  and ``serving_default`` (probs or elbo), taking the model's inputs
"""
import datetime
import contextlib
import json
import logging as std_logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import export as jax_export

from research import errors
from research.data import pipeline, preprocess, splits, tabular, text
from research.serving import drift, runtime
from research.core import state as state_lib
from research.tasks import base as tasks_base
from research.train import restore as restore_lib, workdir as workdir_lib

PLATFORMS = ("cpu", "cuda")
SAMPLE_SIZE = 2000  # reference scores kept
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
BINS = 10


def function_names(run) -> tuple[tuple[str, dict], ...]:
  """``(name, options)`` of the functions exported for the run's task."""
  capabilities = run.task.capabilities
  if {tasks_base.CLASSIFIER, tasks_base.MULTILABEL} & capabilities:
    return tuple((n, {}) for n in ("probs", "logits", "features") if n in run.task.predictions)
  if tasks_base.LATENT in capabilities:
    names = [("elbo", {})]
    nll = run.config.get("evals", {}).get("nll")
    if nll is not None and nll.get("num_samples", 0):
      names.append(("nll", {"num_samples": int(nll.num_samples), "chunk": int(nll.chunk)}))
    return tuple(names)
  raise errors.ConfigError(f"task.name={run.config.task.name!r} cannot be exported: --mode=export "
                           f"exports classifiers (probs, logits, features) and VAEs (elbo, nll)")


def input_names(run) -> tuple[str, ...]:
  """The features the model reads (the label only for a class-conditional VAE)."""
  if tasks_base.LATENT in run.task.capabilities:
    return ("image",) + (("label",) if run.config.model.get("num_classes", 0) else ())
  return tuple(run.config.task.get("inputs", ("image",)))


def label_names(config, num_classes: int | None) -> list[str] | None:
  """The class names from the dataset's TFDS info (ClassLabel names; for several boolean
  label features, their names); else the class indices."""
  data = config.data
  if text.is_text(data) and len(data.text.labels) > 1:
    return list(data.text.labels)
  feature = data.text.labels[0] if text.is_text(data) else "label"
  try:
    info = pipeline.get_builder(data.name, data.data_dir, False).info
    names = list(info.features[feature].names)
    if num_classes is None or len(names) == num_classes:
      return names
  except Exception as e:  # not prepared here, no such feature, not a ClassLabel
    logging.warning("export: no label names for %s (%s); class indices instead", data.name, e)
  return None if num_classes is None else [str(i) for i in range(num_classes)]


def make_function(run, state, name: str, options: dict):
  """``f(param_leaves, inputs, key)``: the config's preprocessing, then the prediction,
  with the same keys as ``Restored.predict`` (research/train/restore.py)."""
  leaves, treedef = jax.tree.flatten({"params": state.params, "model_state": state.model_state})
  preprocess_fn, fn = preprocess.parse(run.config.data.preprocess), run.task.prediction(name)

  def predict(param_leaves, inputs, key):
    variables = jax.tree.unflatten(treedef, param_leaves)
    preprocess_key, predict_key = jax.random.split(key)
    return fn(variables["params"], variables["model_state"], preprocess_fn(inputs, preprocess_key),
              predict_key, **options)
  if tasks_base.LATENT in run.task.capabilities:  # random binarization and posterior samples
    return per_example(predict), leaves, treedef
  return predict, leaves, treedef


def per_example(fn):
  """``fn(param_leaves, inputs, key)`` applied to each example alone, every example with the
  same ``key`` (common random numbers): an example's output is a function of that example
  and the key, never of the batch a server put it in. Each example's output equals ``fn``
  on a batch of that example alone."""
  def each(param_leaves, inputs, key):
    def one(example):
      out = fn(param_leaves, jax.tree.map(lambda v: v[None], example), key)
      return jax.tree.map(lambda v: v[0], out)
    return jax.vmap(one)(inputs)
  return each


def export_one(fn, leaves, spec: dict, platforms) -> tuple[jax_export.Exported, tuple]:
  """``fn`` exported with a symbolic batch ``b``, for ``platforms`` (else the CPU alone)."""
  b, = jax_export.symbolic_shape("b")
  args = ([jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves],
          {k: jax.ShapeDtypeStruct((b, *shape), dtype) for k, (shape, dtype) in spec.items()},
          jax.ShapeDtypeStruct((2,), jnp.uint32))
  try:
    return jax_export.export(jax.jit(fn), platforms=platforms)(*args), tuple(platforms)
  except Exception as e:  # a lowering this machine lacks (e.g. a GPU custom call)
    if tuple(platforms) == ("cpu",):
      raise
    logging.warning("export for %s failed (%s); exporting for the CPU alone", platforms, e)
    return jax_export.export(jax.jit(fn), platforms=("cpu",))(*args), ("cpu",)


def writable_dir(directory: str) -> str:
  try:
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, ".write_test")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise errors.UserError(f"the export directory {directory} is not writable "
                           f"({e.strerror or e}); pass another --export_dir") from None
  return directory


def summary(values: np.ndarray, edges: np.ndarray | None = None) -> dict:
  """A sample, quantiles, decile bin edges and each bin's fraction (for PSI) of ``values``."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return {"count": 0}
  if edges is None:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)))
  inner = edges[1:-1]
  counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(edges) - 1)
  sample = values if len(values) <= SAMPLE_SIZE else np.random.default_rng(0).choice(
      values, SAMPLE_SIZE, replace=False)
  return {"count": int(len(values)), "mean": float(values.mean()), "std": float(values.std()),
          "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES},
          "bin_edges": [float(e) for e in edges],
          "bin_fractions": [float(c) / len(values) for c in counts],
          "sample": [float(v) for v in sample]}


def raw_split(config, split: str) -> dict:
  """The run's raw (unencoded) rows of ``split`` (``val`` or ``train``), as RunData reads them."""
  data = config.data
  if splits.uses_folds(data):
    raw = pipeline.load_split(data, data.train_split, "train_split")
    raw = {k: v[splits.fold_rows(raw[splits.fold_label(data)], data.folds)[split]]
           for k, v in raw.items()}
  else:
    raw = pipeline.load_split(data, data[f"{split}_split"], f"{split}_split")
  return splits.only_labels(raw, data.train_labels) if data.get("train_labels") else raw


def column_summaries(config, raw: dict) -> dict:
  """Per tabular column: the fraction missing, and numeric bins or category fractions."""
  out = {}
  for column in config.data.tabular.numeric:
    values = np.asarray(raw[column], np.float64)
    missing = np.isnan(values)
    out[column] = {"kind": "numeric", "missing_fraction": float(missing.mean()),
                   **{k: v for k, v in summary(values[~missing]).items() if k != "sample"}}
  for column in config.data.tabular.categorical:
    values = runtime._strings(raw[column])
    categories, counts = np.unique(values[values != ""], return_counts=True)
    out[column] = {"kind": "categorical", "missing_fraction": float((values == "").mean()),
                   "fractions": {str(c): float(n) / len(values) for c, n in zip(categories, counts)}}
  return out


def reference_statistics(run, functions: dict, leaves, names: tuple[str, ...],
                         key: np.ndarray) -> dict:
  """What a drift monitor needs, from the run's validation split (its training split when
  the config has none), scored by the exported ``functions`` with the export's key: the
  numbers a server computes for those inputs."""
  config = run.config
  split = "val" if config.data.get("val_split") or splits.uses_folds(config.data) else "train"
  data = splits.RunData(config.data, run.workdir, config.eval_batch_size)
  arrays = data.arrays(split)
  inputs = {k: arrays[k] for k in names}
  classifier = tasks_base.LATENT not in run.task.capabilities
  score_fn = jax.jit(functions["probs" if classifier else "elbo"])
  size, outputs = pipeline.num_examples(inputs), []
  for start in range(0, size, config.eval_batch_size):
    batch = {k: v[start:start + config.eval_batch_size] for k, v in inputs.items()}
    outputs.append(np.asarray(score_fn(leaves, batch, key)))
  out = np.concatenate(outputs)
  reference = {"split": split, "split_spec": config.data.get(f"{split}_split"), "examples": size}
  if classifier:
    multilabel = tasks_base.MULTILABEL in run.task.capabilities
    reference["score"] = {"name": "confidence", "of": "probs", "multilabel": multilabel,
                          "definition": "the max probability's log-odds per example "
                          "(research/serving/drift.py confidence)",
                          **summary(drift.confidence(out, multilabel))}
    if multilabel:
      reference["positive_rate"] = [float(v) for v in (out > 0.5).mean(0)]
    else:
      reference["predicted_fractions"] = [
          float(v) for v in np.bincount(out.argmax(-1), minlength=out.shape[-1]) / len(out)]
  else:
    reference["score"] = {"name": "neg_elbo", "of": "elbo", "definition": "-ELBO per example "
                          "(nats), the export's key", **summary(-out)}
  if tabular.is_tabular(config.data):
    reference["columns"] = column_summaries(config, raw_split(config, split))
  else:
    reference["inputs"] = {k: {"definition": "mean value per example", **{
        f: v for f, v in summary(v.reshape(len(v), -1).astype(np.float64).mean(-1)).items()
        if f != "sample"}} for k, v in inputs.items()}
  return reference


def write_saved_model(directory: str, functions: dict, leaves, spec: dict, key: np.ndarray,
                      default: str, platforms) -> None:
  """``functions`` (name -> f(param_leaves, inputs, key)) as a TF SavedModel (jax2tf), the
  parameters as tf.Variables, ``key`` fixed; one signature per function, ``serving_default``
  the ``default`` one. Each signature takes the model's inputs by name and returns
  ``{name: output}``."""
  import tensorflow as tf
  from jax.experimental import jax2tf
  module = tf.Module()
  module.params = [tf.Variable(np.asarray(x), trainable=False) for x in leaves]
  signature = [{k: tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name=k)
                for k, (shape, dtype) in spec.items()}]
  signatures = {}

  def serving(name, fn):
    converted = jax2tf.convert(lambda p, x: fn(p, x, key), with_gradient=False,
                               polymorphic_shapes=[None, "(b, ...)"],
                               native_serialization_platforms=tuple(platforms))
    return tf.function(lambda inputs: {name: converted(module.params, inputs)},
                       input_signature=signature, autograph=False)

  for name, fn in functions.items():
    tf_fn = serving(name, fn)
    setattr(module, name, tf_fn)
    signatures[name] = tf_fn.get_concrete_function()
  signatures["serving_default"] = signatures[default]
  with python_logging_kept():
    tf.saved_model.save(module, directory, signatures=signatures)


@contextlib.contextmanager
def python_logging_kept():
  """Undoes what TensorFlow's saving does to Python logging (it sets the ``absl`` logger to
  WARNING and adds a root handler), which would silence the project's INFO lines after an
  export in the same process."""
  absl_logger, root = std_logging.getLogger("absl"), std_logging.getLogger()
  level, handlers = absl_logger.level, list(root.handlers)
  try:
    yield
  finally:
    absl_logger.setLevel(level)
    root.handlers[:] = handlers


def export(workdir: str, export_dir: str | None = None, step: int | None = None,
           replica: int | None = None, saved_model: bool = True,
           platforms: tuple[str, ...] = PLATFORMS, config=None) -> dict:
  """Exports the run in ``workdir`` (its newest checkpoint, or ``step``) to ``export_dir``
  (default ``WORKDIR/export``); returns a summary (step, functions). ``config`` replaces
  the workdir's config.json (as in ``restore``)."""
  export_dir = os.path.abspath(export_dir or os.path.join(workdir, "export"))
  run = restore_lib.restore(workdir, step, config)
  names = function_names(run)  # an unsupported task fails before anything is written
  writable_dir(export_dir)
  state = run.replica(replica)
  trained_spec = workdir_lib.read_input_spec(workdir)
  spec = {k: trained_spec[k] for k in input_names(run)}
  key = np.asarray(state_lib.run_rngs(run.config.seed)["eval"], np.uint32)
  meta_functions, built, used_platforms = {}, {}, tuple(platforms)
  for name, options in names:
    fn, leaves, treedef = make_function(run, state, name, options)
    exported, used = export_one(fn, leaves, spec, platforms)
    used_platforms = tuple(p for p in used_platforms if p in used)  # what every function has
    with open(os.path.join(export_dir, f"{name}.jax"), "wb") as f:
      f.write(exported.serialize())
    meta_functions[name] = {
        "options": options, "platforms": list(used),
        "outputs": jax.tree.map(lambda a: {"shape": [str(d) for d in a.shape],
                                           "dtype": str(a.dtype)},
                                jax.tree.unflatten(exported.out_tree, exported.out_avals)),
        "signature": "f(params, inputs, key)"}
    built[name] = fn
  arrays = [np.asarray(x) for x in leaves]
  np.savez(os.path.join(export_dir, runtime.PARAMS_FILE),  # bfloat16 & co. as their bits
           **{f"p{i:05d}": x if x.dtype.isbuiltin == 1 else x.view(f"u{x.dtype.itemsize}")
              for i, x in enumerate(arrays)})
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
      jax.tree.unflatten(treedef, leaves))[0]]
  preprocessing = {}
  for kind, file in (("tabular", tabular.TABULAR_FILE), ("tokenizer", text.TOKENIZER_FILE)):
    if os.path.exists(os.path.join(workdir, file)):
      shutil.copyfile(os.path.join(workdir, file), os.path.join(export_dir, file))
      preprocessing[kind] = file
  classifier = tasks_base.LATENT not in run.task.capabilities
  num_classes = None
  if classifier:
    num_classes = int(meta_functions["probs"]["outputs"]["shape"][-1])
  meta = {
      "format": 1, "config": config_name(workdir), "workdir": os.path.abspath(workdir),
      "step": int(run.step),
      "task": run.config.task.name, "model": run.config.model.name,
      "dataset": run.config.data.name, "kind": "classifier" if classifier else "vae",
      "functions": meta_functions, "default_function": "probs" if classifier else "elbo",
      "inputs": {k: [list(s), d] for k, (s, d) in spec.items()},
      "raw_inputs": raw_input_description(run, spec),
      "data_preprocess": run.config.data.preprocess,
      "preprocessing": preprocessing,
      "text_feature": run.config.data.text.feature if text.is_text(run.config.data) else None,
      "label_names": label_names(run.config, num_classes) if classifier else None,
      "num_params": len(leaves), "param_paths": paths,
      "param_dtypes": [str(x.dtype) for x in arrays],
      "platforms": list(used_platforms),
      "platform_note": None if used_platforms == tuple(platforms) else
      f"lowering for {list(platforms)} failed here; the CPU alone for some functions",
      "eval_key": [int(v) for v in key], "jax_version": jax.__version__,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  reference = reference_statistics(run, built, leaves, tuple(spec), key)
  with open(os.path.join(export_dir, runtime.REFERENCE_FILE), "w") as f:
    json.dump(reference, f)
  shutil.copyfile(runtime.__file__, os.path.join(export_dir, "runtime.py"))
  meta["saved_model"] = None
  if saved_model:
    try:
      shutil.rmtree(os.path.join(export_dir, "saved_model"), ignore_errors=True)  # no stale files
      write_saved_model(os.path.join(export_dir, "saved_model"), built, leaves, spec, key,
                        meta["default_function"], used_platforms)
      meta["saved_model"] = "saved_model"
    except Exception as e:  # noqa: BLE001 (TF or jax2tf missing or failing: jax export stays)
      meta["saved_model_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      logging.warning("export: no TF SavedModel (%s)", meta["saved_model_error"])
  with open(os.path.join(export_dir, runtime.EXPORT_FILE), "w") as f:
    json.dump(meta, f, indent=1)
  logging.info("Exported step %d (%s) to %s", run.step, ", ".join(meta_functions), export_dir)
  return {"step": float(run.step), "functions": float(len(meta_functions)),
          "saved_model": float(meta["saved_model"] is not None), "export_dir": export_dir}


def config_name(workdir: str) -> str:
  """The config the run was launched with (results.json), else the workdir's name."""
  results = workdir_lib.read_results(workdir, run_fields=True) or {}
  return results.get("config") or os.path.basename(os.path.abspath(workdir))


def raw_input_description(run, spec: dict) -> dict:
  """What ``runtime.predict`` takes, in words, with the columns or text feature."""
  data = run.config.data
  if tabular.is_tabular(data):
    with open(os.path.join(run.workdir, tabular.TABULAR_FILE)) as f:
      encoded = json.load(f)["features"]
    return {"kind": "tabular", "numeric": list(data.tabular.numeric),
            "categorical": list(data.tabular.categorical), "features": encoded,
            "format": "rows: a list of dicts (a field missing or None where unknown), or columns"}
  if text.is_text(data):
    return {"kind": "text", "feature": data.text.feature, "format": "a list of strings"}
  return {"kind": "arrays", "format": "a dict of arrays shaped (batch, *shape) as 'inputs'"}
