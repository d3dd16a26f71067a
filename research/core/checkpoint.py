"""Orbax checkpoints of the TrainState: atomic writes, the last K kept, resume from the
newest readable one, and a clear error when a checkpoint does not fit the config.

Each checkpoint carries a CRC32 of every array (the ``checksums`` item beside orbax's
``default``), verified on restore: a checkpoint whose bytes changed after it was written
reads without error, so only the checksum tells it from a good one. A failed write (full
disk, a read-only or removed folder) is a StorageError; orbax's threads of that write never
finish, so the launcher exits without waiting for them (launch.py ``exit_now``).
"""
import os
import re
import shutil
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from research import errors
from research.core.state import TrainState, step_of

STATE_ITEM, CHECKSUMS_ITEM = "default", "checksums"


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


def checksums(state) -> dict[str, int | None]:
  """``{"params/Dense_0/kernel": CRC32 of its bytes}``; None for an array this process does
  not hold whole (sharded across processes)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    key = "/".join(re.findall(r"\w+", jax.tree_util.keystr(path)))
    if isinstance(leaf, jax.Array) and leaf.is_fully_replicated:
      leaf = leaf.addressable_data(0)  # this process's copy: no transfer between devices
    elif isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      out[key] = None
      continue
    out[key] = zlib.crc32(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return out


def checksum_mismatch(expected: dict, found: dict) -> str | None:
  """The arrays whose checksums differ (None: none); arrays without one are not compared."""
  bad = [k for k, v in expected.items() if v is not None and found.get(k) not in (None, v)]
  return f"the checksums of {', '.join(bad[:3])} differ from those written" if bad else None


class Checkpointer:
  """Saves and restores the TrainState under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = directory
    self._failed = False  # a save failed: its orbax threads cannot be waited for
    self._manager = ocp.CheckpointManager(
        directory,
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                       CHECKSUMS_ITEM: ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _check_structure(self, step: int, target: TrainState) -> None:
    metadata = self._manager.item_metadata(step)
    metadata = metadata[STATE_ITEM] if metadata is not None else None
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
        return self._restore_checked(step, abstract)
      except errors.ConfigError:
        raise
      except Exception as e:  # orbax and tensorstore raise many kinds for a damaged checkpoint
        aside = self._move_aside(step)
        logging.warning("The checkpoint at step %d cannot be read (%s: %s); moved it to %s and "
                        "trying the one before.", step, type(e).__name__, str(e)[:200], aside)
    raise errors.UserError(f"no readable checkpoint in {self.directory}")

  def _restore_checked(self, step: int, abstract) -> TrainState:
    """The state at ``step``, its arrays checked against the checksums saved with them
    (checkpoints written before checksums existed are restored unchecked)."""
    items = {STATE_ITEM: ocp.args.StandardRestore(abstract)}
    has_checksums = os.path.isdir(os.path.join(self.directory, str(step), CHECKSUMS_ITEM))
    if has_checksums:
      items[CHECKSUMS_ITEM] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    state = restored[STATE_ITEM]
    if has_checksums:
      mismatch = checksum_mismatch(restored[CHECKSUMS_ITEM], checksums(state))
      if mismatch:
        raise ValueError(mismatch)
    return state

  def _move_aside(self, step: int) -> str:
    aside = os.path.join(f"{self.directory}_unreadable", str(step))
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.rmtree(aside, ignore_errors=True)
    shutil.move(os.path.join(self.directory, str(step)), aside)
    self._manager.reload()
    return aside

  def check_room(self, state: TrainState) -> None:
    """A StorageError, before anything is written, when the disk has less room than the
    state's bytes (a write that fails half way leaves the library's threads hanging)."""
    needed = sum(np.size(x) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
    free = errors.free_bytes(self.directory)
    if free is not None and free < needed:
      raise errors.StorageError(
          f"a checkpoint of step {step_of(state)} needs about {errors.format_bytes(needed)} and "
          f"{self.directory} has {errors.free_space(self.directory)}; free space (or lower "
          f"keep_checkpoints), then rerun the same command to resume")

  def save(self, state: TrainState) -> None:
    """Starts writing ``state`` (in the background); too little room, or a failure of this
    write or of the one before it (which this waits for), is a StorageError."""
    step = step_of(state)
    if step == self._manager.latest_step():
      return
    self.check_room(state)
    try:
      self._manager.save(step, args=ocp.args.Composite(**{
          STATE_ITEM: ocp.args.StandardSave(state),
          CHECKSUMS_ITEM: ocp.args.JsonSave(checksums(state))}))
    except Exception as e:  # orbax and tensorstore raise many kinds for one failed write
      self._failed = True
      raise errors.storage_error("writing a checkpoint to", self.directory, e) from e

  def close(self) -> None:
    """Waits for the pending write; after a failed one, returns at once (its threads wait
    for signals that never come)."""
    if self._failed:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      self._failed = True
      raise errors.storage_error("writing a checkpoint to", self.directory, e) from e
    self._manager.close()
