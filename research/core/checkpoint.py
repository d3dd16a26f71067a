"""Orbax checkpoints of the TrainState: atomic writes, the last K kept, resume from latest."""
import jax
import orbax.checkpoint as ocp

from research.core.state import TrainState


class Checkpointer:
  """Saves and restores the TrainState under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int):
    self._manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, target: TrainState) -> TrainState:
    """The newest checkpoint laid out like ``target`` (its shapes, dtypes, shardings)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(
        self._manager.latest_step(), args=ocp.args.StandardRestore(abstract))

  def save(self, state: TrainState) -> None:
    step = int(state.step)
    if step != self._manager.latest_step():
      self._manager.save(step, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
