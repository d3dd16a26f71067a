"""The train state: everything a run needs to continue, as one pytree."""
from typing import Any

import flax
import jax
import numpy as np


class TrainState(flax.struct.PyTreeNode):
  """Step, parameters, optimizer state, non-trained model state and the run's RNG.

  The input position is a function of ``step`` (see research.data.pipeline), so
  checkpointing this pytree is enough to resume a run exactly.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # e.g. {"batch_stats": ...}; {} for models without any
  rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)


def create_train_state(params, model_state, optimizer, rng) -> TrainState:
  return TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32),
      params=params,
      opt_state=optimizer.init(params),
      model_state=model_state,
      rng=rng,
  )


def split_variables(variables):
  """Splits Flax variables into trainable params and the rest (model state)."""
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  return params, variables


def step_of(state: TrainState) -> int:
  """The state's step as an int (replicas, stacked on a leading axis, share it)."""
  return int(np.asarray(state.step).reshape(-1)[0])
