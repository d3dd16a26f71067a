"""The task contract: what every task gives the train step, the evaluators and the studies.

A task module defines ``Task(config)`` satisfying the ``Task`` protocol below. The core's
train step reads ``loss_fn`` and ``metrics``; evaluators, studies and export read the
named prediction functions (``Task.predictions``), each jit-able and batch-wise:

    fn = task.prediction("probs")
    probs = fn(params, model_state, batch, rng)     # batch already preprocessed

Optional abilities are declared in ``capabilities`` (never guessed with ``hasattr``):

    CLASSIFIER   logits, probs, features; the batch has a class index ``label``
    MULTILABEL   the same with K yes/no labels: ``label`` is multi-hot, ``probs`` sigmoids
    GENERATIVE   ``sample(params, model_state, rng, num) -> images`` from the prior
    LATENT       encode, reconstruct, elbo, nll (a latent-variable model of x)
    IMAGES       ``images(params, model_state, batch, rng) -> {name: images}`` summary grids,
                 and ``image_layouts() -> {name: Layout}``: their rows' and columns' labels

Each task checks its own config fields in ``validate_config`` (a classmethod, called
before anything loads or compiles); the generic checks live in research/train/validation.py.
"""
import contextlib
import inspect
from typing import Callable, ClassVar, Protocol

import flax.linen as nn
import jax
import ml_collections

from research import errors, registry

CLASSIFIER, MULTILABEL = "classifier", "multilabel"
GENERATIVE, LATENT, IMAGES = "generative", "latent", "images"

# (params, model_state, preprocessed batch, rng, **options) -> per-example array(s)
PredictionFn = Callable[..., jax.Array | dict | tuple]


class Task(Protocol):
  """What the train step, the evaluators and the studies may call on a task."""
  metrics: ClassVar[dict]  # name -> clu metric class over the per-example ``outputs``
  capabilities: ClassVar[frozenset[str]]
  predictions: ClassVar[tuple[str, ...]]  # names of the batch-wise prediction methods
  # Top-level parameter groups trained on a per-example output of ``loss_fn`` of their own
  # instead of the loss, in the same train step (an adversary's): ``{group: output}``;
  # research/core/step.py ``with_auxiliary_losses``. Most tasks: ``{}``.
  auxiliary_losses: ClassVar[dict[str, str]]

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """Raises errors.ConfigError naming the first task field that cannot work."""

  @classmethod
  def complete_config(cls, config: ml_collections.ConfigDict, input_spec: dict) -> None:
    """Fills fields the config leaves to the data (e.g. a VAE's ``model.image_shape``)
    from ``input_spec``: per-example ``{feature: (shape, dtype)}`` of the training split.
    Runs once, before the task is built; the completed config is what config.json records."""

  def init_variables(self, rng: jax.Array, batch: dict):
    """The model's Flax variables, initialised on ``batch``'s shapes."""

  def loss_fn(self, params, model_state, batch: dict, rng: jax.Array, train: bool):
    """``(loss, (outputs, new_model_state))``; ``outputs`` are per-example arrays that
    ``metrics`` read."""

  def prediction(self, name: str) -> PredictionFn:
    """The named prediction function (one of ``predictions``)."""


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """``config.model.name`` picks ``research/models/<name>.py``; the other fields are its arguments."""
  kwargs = config.model.to_dict()
  model_cls = registry.import_member("models", kwargs.pop("name"), "Model")
  try:
    model = model_cls(**kwargs)
  except TypeError as e:  # a field the model does not take
    raise errors.ConfigError(f"model.name={config.model.name!r} cannot be built from the "
                             f"config's model fields: {e}") from None
  check_call_signature(model_cls, config.model.name)
  return model


def check_call_signature(model_cls: type, name: str) -> None:
  """The contract every model keeps (research/models/base.py): ``__call__(*inputs, train)``,
  since training and evaluation call it with ``train=True`` / ``False``."""
  call = getattr(model_cls, "__call__", None)
  try:
    parameters = inspect.signature(call).parameters.values()
  except (TypeError, ValueError):
    parameters = ()
  if not any(p.name == "train" or p.kind is p.VAR_KEYWORD for p in parameters):
    raise errors.ConfigError(
        f"model.name={name!r}: {model_cls.__module__}.{model_cls.__qualname__}.__call__ must "
        f"take a `train: bool` argument (True in training, False in evaluation), as "
        f"research/models/base.py describes")


def task_class(config: ml_collections.ConfigDict) -> type:
  return registry.import_member("tasks", config.task.name, "Task")


def make_task(config: ml_collections.ConfigDict, example: dict | None = None) -> Task:
  """The config's task; with ``example`` (a batch of the data), first completing the fields
  the config leaves to the data (``Task.complete_config``)."""
  cls = task_class(config)
  if example is not None:
    cls.complete_config(config, {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in example.items()})
  return cls(config)


def apply_model(model: nn.Module, params, model_state, *args, rng: jax.Array, train: bool,
                method=None, matmul_precision: str = "default", mutable=()):
  """Applies ``model``; in training, mutable collections (batch stats) are updated, and
  collections in ``mutable`` (e.g. sown intermediates) are returned too.
  ``matmul_precision`` other than ``default`` is ``jax.default_matmul_precision`` for the
  model's matmuls (``research/models/matmul.py``)."""
  variables = {"params": params, **model_state}
  kwargs = {"rngs": {"dropout": rng}, "method": method}
  if method is None:
    kwargs["train"] = train
  updated = list(model_state) if train and model_state else []
  with (contextlib.nullcontext() if matmul_precision == "default"
        else jax.default_matmul_precision(matmul_precision)):
    if updated or mutable:
      out, new_state = model.apply(variables, *args, mutable=[*updated, *mutable], **kwargs)
      return out, {**model_state, **new_state}
    return model.apply(variables, *args, **kwargs), model_state


class BaseTask:
  """Holds the config and model; subclasses define the loss, metrics and predictions."""
  metrics: ClassVar[dict] = {}
  capabilities: ClassVar[frozenset[str]] = frozenset()
  predictions: ClassVar[tuple[str, ...]] = ()
  auxiliary_losses: ClassVar[dict[str, str]] = {}
  initializes: ClassVar[bool] = False  # True: ``initialize`` sets state from the data

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.model = build_model(config)
    self.matmul_precision = config.get("matmul_precision", "default")

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """No task fields to check."""

  @classmethod
  def complete_config(cls, config: ml_collections.ConfigDict, input_spec: dict) -> None:
    """Nothing to read from the data."""

  def model_inputs(self, batch: dict) -> tuple:
    """The batch features the model takes, in order: ``config.task.inputs`` (default: the
    image; text models take ``("tokens", "length")``)."""
    return tuple(batch[k] for k in self.config.task.get("inputs", ("image",)))

  def init_variables(self, rng: jax.Array, batch: dict):
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({"params": params_rng, "dropout": dropout_rng},
                           *self.model_inputs(batch), train=False)

  def initialize(self, state, batches):
    """A fresh run's state before step 0, set from ``batches`` (the training split in order,
    preprocessed) when ``initializes``; never called on resume (research/train/warm_start.py)."""
    return state

  def prediction(self, name: str) -> PredictionFn:
    if name not in self.predictions:
      raise errors.ConfigError(f"task.name={self.config.task.name!r} has no prediction "
                               f"{name!r}; it has {list(self.predictions)}")
    return getattr(self, name)

