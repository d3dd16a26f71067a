"""Orbax checkpoints of the TrainState: atomic writes, the last K kept, resume from the
newest readable one, and a clear error when a checkpoint does not fit the config."""
import os
import re
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

from research import errors
from research.core.state import TrainState, step_of


def _shapes_by_path(tree) -> dict[str, tuple]:
  """``{"params/Dense_0/kernel": shape}``, alike for a TrainState and orbax metadata."""
  return {"/".join(re.findall(r"\w+", jax.tree_util.keystr(path))): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def structure_mismatch(expected: dict[str, tuple], found: dict[str, tuple]) -> str | None:
  """A one-line description of how two ``_shapes_by_path`` trees differ, or None."""
  params_first = lambda key: (not key.startswith("params/"), key)
  missing = sorted(set(expected) - set(found), key=params_first)
  extra = sorted(set(found) - set(expected), key=params_first)
  reshaped = [f"{k} {found[k]} != {expected[k]}"
              for k in sorted(set(expected) & set(found), key=params_first)
              if expected[k] != found[k]]
  parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
      ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + \
      ([f"shape {', '.join(reshaped[:3])}"] if reshaped else [])
  return "; ".join(parts) or None


class Checkpointer:
  """Saves and restores the TrainState under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = directory
    self._manager = ocp.CheckpointManager(
        directory,
        item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _check_structure(self, step: int, target: TrainState) -> None:
    metadata = self._manager.item_metadata(step)
    if metadata is None:
      raise ValueError("its metadata cannot be read")
    mismatch = structure_mismatch(_shapes_by_path(target), _shapes_by_path(metadata))
    if mismatch:
      raise errors.ConfigError(
          f"the checkpoint at {self.directory}/{step} does not fit this config ({mismatch}); "
          f"use another --workdir, or the config that wrote it")

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def restore(self, target: TrainState, step: int | None = None) -> TrainState:
    """The newest readable checkpoint (or the one at ``step``), laid out like ``target``
    (arrays or ``jax.ShapeDtypeStruct``s: shapes, dtypes, shardings).

    A checkpoint that cannot be read is moved to ``<directory>_unreadable/`` with a
    warning, and the one before it is tried; one that reads but does not fit
    ``target`` is an error.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    steps = sorted(self._manager.all_steps(), reverse=True)
    if step is not None:
      if step not in steps:
        raise errors.UserError(f"no checkpoint of step {step} in {self.directory}; it has "
                               f"steps {sorted(steps)}")
      steps = [step]
    for step in steps:
      try:
        self._check_structure(step, target)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except errors.ConfigError:
        raise
      except Exception as e:  # orbax and tensorstore raise many kinds for a damaged checkpoint
        aside = self._move_aside(step)
        logging.warning("The checkpoint at step %d cannot be read (%s: %s); moved it to %s and "
                        "trying the one before.", step, type(e).__name__, str(e)[:200], aside)
    raise errors.UserError(f"no readable checkpoint in {self.directory}")

  def _move_aside(self, step: int) -> str:
    aside = os.path.join(f"{self.directory}_unreadable", str(step))
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.rmtree(aside, ignore_errors=True)
    shutil.move(os.path.join(self.directory, str(step)), aside)
    self._manager.reload()
    return aside

  def save(self, state: TrainState) -> None:
    step = step_of(state)
    if step != self._manager.latest_step():
      self._manager.save(step, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
