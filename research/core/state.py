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


EVAL_KEY = 0  # fixed, so runs with any seed are scored on the same binarized images


def run_rngs(seed: int) -> dict[str, jax.Array]:
  """The run's root keys: parameter init and training from the seed; evaluation fixed."""
  init, train = jax.random.split(jax.random.PRNGKey(seed))
  return {"init": init, "train": train, "eval": jax.random.PRNGKey(EVAL_KEY)}


def make_init(task, optimizer, preprocess_fn):
  """``init(seed, example) -> TrainState``: ``task.init_variables`` (any object with that
  method) initialised on ``example``'s shapes; pure, so it vmaps over seeds for replicas."""
  def init(seed, example):
    rngs = run_rngs(seed)
    variables = task.init_variables(rngs["init"], preprocess_fn(example, rngs["init"]))
    params, model_state = split_variables(variables)
    return create_train_state(params, model_state, optimizer, rngs["train"])

  return init


# The initialisation runs once: compiled without XLA's backend optimisations on CPU it
# is ready in a third of the time and gives the same parameters to float rounding
# (tests/test_startup.py).
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_init(init_fn, **jit_kwargs):
  """``jax.jit`` for a one-off initialisation function."""
  options = CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
  return jax.jit(init_fn, compiler_options=options, **jit_kwargs)


def init_state(task, optimizer, preprocess_fn, example: dict, seed: int) -> TrainState:
  """A fresh TrainState for ``seed``."""
  return jit_init(make_init(task, optimizer, preprocess_fn))(seed, example)
