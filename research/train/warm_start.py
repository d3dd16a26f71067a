"""What a fresh run does to its initial state before step 0, and never on resume (the
checkpoint then holds the result):

1. ``config.init_from`` (optional; ``workdir`` and ``modules``): the named top-level
   submodules' parameters and model state (batch statistics) are copied from another run's
   newest checkpoint, e.g. Deep SVDD's encoder from the autoencoder pretrained on the same
   data::

       config.init_from = ml_collections.ConfigDict(dict(workdir="runs/ae", modules=("encoder",)))

   The shapes must match; the optimizer's state (zeros) is unaffected. A run of replicas
   is a source too with ``init_from.replica`` (optional): the index of the one to copy,
   e.g. the autoencoder of one class from a run that trained every class's.
2. ``task.initialize(state, batches)``: a task's data-dependent start (Deep SVDD's centre
   is the mean embedding of the training split), given the training split in order,
   preprocessed as evaluation sees it.
"""
from typing import Iterator

import jax
import ml_collections
import numpy as np

from research import errors
from research.core import state as state_lib
from research.data import pipeline, preprocess
from research.train import restore


def copy_modules(tree: dict, source: dict, modules: tuple[str, ...], what: str,
                 origin: str) -> dict:
  """``tree`` with its top-level entries ``modules`` taken from ``source`` (same shapes)."""
  out = dict(tree)
  for name in modules:
    if name not in tree:
      continue
    if name not in source:
      raise errors.ConfigError(f"init_from.modules: {origin} has no {what} {name!r}; it has "
                               f"{sorted(source)}")
    mine = jax.tree.map(np.shape, tree[name])
    theirs = jax.tree.map(np.shape, source[name])
    if mine != theirs:
      raise errors.ConfigError(f"init_from.modules: {what} {name!r} of {origin} has other "
                               f"shapes than this run's ({theirs} vs {mine}): the models differ")
    out[name] = source[name]
  return out


def from_run(state, spec: ml_collections.ConfigDict):
  """``state`` with ``spec.modules`` copied from the run in ``spec.workdir``."""
  modules = tuple(spec.get("modules") or ())
  if not modules:
    raise errors.ConfigError("init_from.modules is empty: name the top-level submodules to "
                             "copy, e.g. ('encoder',)")
  source = restore.restore(spec.workdir)
  index = spec.get("replica")
  if source.adaptor.count() != 1 and index is None:
    raise errors.ConfigError(f"init_from.workdir={spec.workdir!r} holds replicas; start from "
                             f"a single run, or choose one with init_from.replica="
                             f"0..{source.adaptor.count() - 1}")
  origin = spec.workdir if index is None else f"{spec.workdir} (replica {index})"
  source_state = source.replica(index)
  missing = [m for m in modules if m not in state.params and m not in source_state.params]
  if missing:
    raise errors.ConfigError(f"init_from.modules {missing}: neither this model nor the one in "
                             f"{origin} has such a submodule ({sorted(state.params)})")
  params = copy_modules(state.params, source_state.params, modules, "parameters", origin)
  model_state = {collection: copy_modules(values, source_state.model_state.get(collection, {}),
                                          modules, f"{collection}", origin)
                 for collection, values in state.model_state.items()}
  return state.replace(params=params, model_state=model_state)


def preprocessed_batches(config: ml_collections.ConfigDict, arrays: dict) -> Iterator[dict]:
  """The training split in order, in batches of ``eval_batch_size``, preprocessed as
  evaluation does (the evaluation key; no augmentation)."""
  fn = jax.jit(preprocess.parse(config.data.preprocess))
  key = state_lib.run_rngs(config.seed)["eval"]
  size = pipeline.num_examples(arrays)
  for start in range(0, size, config.eval_batch_size):
    yield fn({k: v[start:start + config.eval_batch_size] for k, v in arrays.items()}, key)


def apply(config: ml_collections.ConfigDict, task, state, train_arrays: dict, count: int):
  """The fresh state after ``init_from`` and ``task.initialize`` (see the module docstring);
  ``count`` is the number of replicas (1: a single run)."""
  spec = config.get("init_from")
  starts_from_run = spec is not None and bool(spec.get("workdir"))
  if not starts_from_run and not task.initializes:
    return state
  if count != 1:
    raise errors.ConfigError("init_from and a task that initializes from data (e.g. Deep "
                             "SVDD's centre) need a single run: leave replicas empty")
  if starts_from_run:
    state = from_run(state, spec)
  if task.initializes:
    state = task.initialize(state, preprocessed_batches(config, train_arrays))
  return state
