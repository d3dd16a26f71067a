"""What every task shares: building the model from the config and applying it.

A task module defines ``Task(config)`` with
  - ``metrics``: dict of clu metric classes over the per-example ``outputs``;
  - ``init_variables(rng, batch)``: the model's Flax variables;
  - ``loss_fn(params, model_state, batch, rng, train)``
      -> ``(loss, (outputs, new_model_state))``;
  - ``images(params, model_state, batch, rng)``: dict of image batches in [0, 1]
    to write at each evaluation (empty when the task has none);
  - optionally ``predict(params, model_state, batch, rng)``: per-example arrays that
    the final evaluation gathers over a whole split and hands to
    ``report(predictions, directory, prefix) -> scalars`` (e.g. a confusion matrix).
"""
import contextlib

import flax.linen as nn
import jax
import ml_collections

from research.core import registry


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """``config.model.name`` picks ``research/models/<name>.py``; the other fields are its arguments."""
  kwargs = config.model.to_dict()
  model_cls = registry.import_member("models", kwargs.pop("name"), "Model")
  return model_cls(**kwargs)


def make_task(config: ml_collections.ConfigDict):
  return registry.import_member("tasks", config.task.name, "Task")(config)


def apply_model(model: nn.Module, params, model_state, *args, rng: jax.Array, train: bool,
                method=None, matmul_precision: str = "default"):
  """Applies ``model``; in training, mutable collections (batch stats) are updated.
  ``matmul_precision`` other than ``default`` is ``jax.default_matmul_precision`` for the
  model's matmuls (``research/models/matmul.py``)."""
  variables = {"params": params, **model_state}
  kwargs = {"rngs": {"dropout": rng}, "method": method}
  if method is None:
    kwargs["train"] = train
  with (contextlib.nullcontext() if matmul_precision == "default"
        else jax.default_matmul_precision(matmul_precision)):
    if train and model_state:
      return model.apply(variables, *args, mutable=list(model_state), **kwargs)
    return model.apply(variables, *args, **kwargs), model_state


class BaseTask:
  """Holds the config and model; subclasses define the loss and metrics."""
  metrics: dict = {}
  report_metrics: tuple[str, ...] = ()  # scalars ``report`` adds to the test results

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.model = build_model(config)
    self.matmul_precision = config.get("matmul_precision", "default")

  def model_inputs(self, batch: dict) -> tuple:
    """The batch features the model takes, in order: ``config.task.inputs`` (default: the
    image; text models take ``("tokens", "length")``)."""
    return tuple(batch[k] for k in self.config.task.get("inputs", ("image",)))

  def init_variables(self, rng: jax.Array, batch: dict):
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({"params": params_rng, "dropout": dropout_rng},
                           *self.model_inputs(batch), train=False)

  def images(self, params, model_state, batch, rng) -> dict:
    return {}

  predict = None  # a task with split-level evaluation defines predict and report
