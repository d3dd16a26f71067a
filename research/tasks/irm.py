"""Invariant Risk Minimization, IRMv1 (Arjovsky et al. 2019), for a classifier whose batches
carry each example's training ``environment`` (an int feature, e.g. Colored MNIST's).

Per batch, with R_e the mean cross-entropy over the batch's examples of environment e and
f the model's logits:

  penalty_e = (d/dw R_e(w * f) at w = 1)^2     (the gradient w.r.t. a dummy classifier
                                                scale, the reference code's ``penalty``)
  objective = mean_e R_e + l2 * ||theta||^2 + lambda_t * mean_e penalty_e,
              divided by lambda_t when lambda_t > 1

with lambda_t = 1 before step ``task.penalty_anneal_steps`` and ``task.penalty_weight``
from then on, and ||theta||^2 the sum of squares of every parameter, biases included (as
the reference code, facebookresearch/InvariantRiskMinimization, code/colored_mnist/main.py).
The means over e run over the environments below ``task.num_environments`` that the batch
holds. ERM is the same objective with ``penalty_weight`` 0 and ``penalty_anneal_steps`` 0.

With ``task.single_logit`` (two classes, ``model.num_classes = 2``) the model is built with
one output f, a binary classifier's logit, and the class logits are (0, f): softmax is
(1 - sigmoid(f), sigmoid(f)) and the loss the reference's binary cross-entropy.

Metrics: ``loss`` (per example), ``accuracy`` and ``penalty`` (the batch's mean_e
penalty_e on each of its examples: a training figure; in evaluation the padding of a last,
partial batch counts as environment 0). Predictions as the classification task's.
"""
import jax
import jax.numpy as jnp
import ml_collections
import optax
from clu import metrics

from research import errors
from research.tasks import base, classification

STEP = "irm_step"  # model_state collection counting training steps, for the anneal


def class_logits(outputs: jax.Array) -> jax.Array:
  """A model's outputs as class logits: one output f (a binary classifier) is (0, f)."""
  if outputs.shape[-1] == 1:
    return jnp.concatenate([jnp.zeros_like(outputs), outputs], axis=-1)
  return outputs


def environment_means(values: jax.Array, environments: jax.Array,
                      num_environments: int) -> jax.Array:
  """(E,): the mean of per-example ``values`` over each environment's examples (0 where
  the batch holds none of it; indices outside 0..E-1 belong to none)."""
  members = jax.nn.one_hot(environments, num_environments, dtype=values.dtype)  # (B, E)
  return (values @ members) / jnp.maximum(members.sum(0), 1.0)


def mean_over_present(values: jax.Array, present: jax.Array) -> jax.Array:
  return jnp.sum(jnp.where(present, values, 0.0)) / jnp.maximum(present.sum(), 1)


def risks_and_scale_gradients(outputs: jax.Array, labels: jax.Array, environments: jax.Array,
                              num_environments: int):
  """(risks (E,), d risks / dw at w = 1 (E,), present (E,)): each environment's mean
  cross-entropy of the logits ``w * outputs`` and its derivative in the dummy scale w, both
  from one forward-mode pass."""
  def risks(scale):
    losses = optax.softmax_cross_entropy_with_integer_labels(class_logits(scale * outputs),
                                                             labels)
    return environment_means(losses, environments, num_environments)

  one = jnp.ones((), outputs.dtype)
  values, gradients = jax.jvp(risks, (one,), (one,))
  present = jnp.any(environments[:, None] == jnp.arange(num_environments), axis=0)
  return values, gradients, present


def irm_penalty(outputs: jax.Array, labels: jax.Array, environments: jax.Array,
                num_environments: int) -> jax.Array:
  """mean_e (d/dw R_e(w * outputs) at w = 1)^2 over the environments the batch holds."""
  _, gradients, present = risks_and_scale_gradients(outputs, labels, environments,
                                                    num_environments)
  return mean_over_present(jnp.square(gradients), present)


def penalty_weight_at(step: jax.Array, weight: float, anneal_steps: int) -> jax.Array:
  """lambda_t: 1 before ``anneal_steps``, ``weight`` from then on."""
  return jnp.where(step >= anneal_steps, weight, 1.0).astype(jnp.float32)


def squared_norm(params) -> jax.Array:
  """The sum of squares of every parameter (biases too)."""
  return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def irm_objective(mean_risk, penalty, weight, l2_term) -> jax.Array:
  """(mean risk + l2 term + weight * penalty), divided by ``weight`` when it is above 1."""
  return (mean_risk + l2_term + weight * penalty) / jnp.maximum(weight, 1.0)


def single_output_model(config: ml_collections.ConfigDict):
  """``config.model`` built with one output in place of its ``num_classes``."""
  return base.build_model(ml_collections.ConfigDict(
      {"model": {**config.model.to_dict(), "num_classes": 1}}))


class Task(classification.Task):
  metrics = {
      "loss": metrics.Average.from_output("loss"),
      "accuracy": metrics.Average.from_output("accuracy"),
      "penalty": metrics.Average.from_output("penalty"),
  }

  @classmethod
  def validate_config(cls, config):
    super().validate_config(config)
    task, require = config.task, errors.require
    require(task.get("loss") == "softmax", "task.loss", task.get("loss"),
            "softmax: IRM's risks are cross-entropies")
    require(task.get("penalty_weight", -1.0) >= 0, "task.penalty_weight",
            task.get("penalty_weight"), "IRMv1's penalty weight, zero (ERM) or positive")
    anneal = task.get("penalty_anneal_steps")
    require(isinstance(anneal, int) and anneal >= 0, "task.penalty_anneal_steps", anneal,
            "the steps before the penalty weight applies (weight 1 until then), 0 or more")
    environments = task.get("num_environments")
    require(isinstance(environments, int) and environments >= 1, "task.num_environments",
            environments, "the number of training environments (indices 0..E-1)")
    require("environment" in config.data.features, "data.features",
            tuple(config.data.features), "a list with environment (IRM's per-environment risks)")
    if task.get("single_logit", False):
      require(config.model.get("num_classes") == 2, "model.num_classes",
              config.model.get("num_classes"), "2 with task.single_logit (a binary classifier)")
    require(not config.get("microbatch_size", 0), "microbatch_size",
            config.get("microbatch_size"), "0: IRM's penalty is over each whole batch")

  def __init__(self, config):
    super().__init__(config)
    if config.task.get("single_logit", False):
      self.model = single_output_model(config)

  def init_variables(self, rng, batch):
    variables = dict(super().init_variables(rng, batch))
    variables[STEP] = {"step": jnp.zeros((), jnp.int32)}
    return variables

  def apply(self, params, model_state, batch, rng, train, mutable=()):
    model_state = {k: v for k, v in model_state.items() if k != STEP}
    return super().apply(params, model_state, batch, rng, train, mutable)

  def loss_fn(self, params, model_state, batch, rng, train):
    task = self.config.task
    outputs, new_state = self.apply(params, model_state, batch, rng, train)
    labels, environments = batch["label"], batch["environment"]
    losses = optax.softmax_cross_entropy_with_integer_labels(class_logits(outputs), labels)
    risks, gradients, present = risks_and_scale_gradients(outputs, labels, environments,
                                                          task.num_environments)
    penalty = mean_over_present(jnp.square(gradients), present)
    step = model_state[STEP]["step"]
    weight = penalty_weight_at(step, task.penalty_weight, task.penalty_anneal_steps)
    l2_term = task.get("l2", 0.0) * squared_norm(params) if task.get("l2", 0.0) else 0.0
    objective = irm_objective(mean_over_present(risks, present), penalty, weight, l2_term)
    accuracy = (jnp.argmax(class_logits(outputs), -1) == labels).astype(jnp.float32)
    new_state = {**new_state, STEP: {"step": step + 1 if train else step}}
    return objective, ({"loss": losses, "accuracy": accuracy,
                        "penalty": jnp.full(labels.shape, penalty)}, new_state)

  def logits(self, params, model_state, batch, rng):
    return class_logits(self.apply(params, model_state, batch, rng, False)[0])
