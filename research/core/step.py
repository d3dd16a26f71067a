"""The one train step and eval step every task shares.

A task supplies
  ``loss_fn(params, model_state, batch, rng, train) -> (loss, (outputs, new_model_state))``
where ``outputs`` holds per-example arrays named like the task's metrics, plus a
dict ``metrics`` of clu metric classes reading those outputs, and ``auxiliary_losses``
(``{}`` for most tasks): parameter groups, such as an adversary, trained on an output of
their own in the same step. Nothing here knows about devices, models or loops.
"""
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from research.core.state import TrainState

Preprocess = Callable[[dict, jax.Array], dict]


NEVER = jnp.iinfo(jnp.int32).max
GUARD_PREFIX = "nonfinite_"  # train metrics named so are guards, not logged


@flax.struct.dataclass
class FirstStep(clu_metrics.Metric):
  """The first step at which a condition held; -1 when it never did.

  Subclasses name the boolean output that holds the condition (``KEY``).
  """
  step: jax.Array
  KEY = ""

  @classmethod
  def from_model_output(cls, *, step, **outputs):
    return cls(step=jnp.where(outputs[cls.KEY], step, NEVER))

  def merge(self, other):
    return type(self)(step=jnp.minimum(self.step, other.step))

  def compute(self):
    return jnp.where(self.step == NEVER, -1, self.step)


def first_step_where(key: str) -> type[FirstStep]:
  return flax.struct.dataclass(type(f"FirstStep_{key}", (FirstStep,), {"KEY": key}))


def train_metrics_collection(task_metrics: dict, guards: tuple[str, ...]):
  """The task's metrics, the gradient norm, and the first non-finite step of each guard."""
  return clu_metrics.Collection.create(
      **task_metrics, grad_norm=clu_metrics.Average.from_output("grad_norm"),
      **{GUARD_PREFIX + g: first_step_where(GUARD_PREFIX + g) for g in guards})


def eval_metrics_collection(task_metrics: dict) -> type[clu_metrics.Collection]:
  return clu_metrics.Collection.create(**task_metrics)


def step_rngs(state: TrainState):
  """Keys for preprocessing and for the loss, derived from the step alone."""
  return jax.random.split(jax.random.fold_in(state.rng, state.step))


def cast_floats(tree, dtype):
  """``tree`` with its floating-point leaves cast to ``dtype`` (integers untouched)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def mixed_precision_loss(loss_fn, compute_dtype):
  """``loss_fn`` computed in ``compute_dtype`` on float32 parameters and inputs.

  Parameters and floating inputs are cast inside the differentiated function, so the
  gradients (and the optimizer state) stay float32; the loss and per-example outputs
  come back as float32 and the model state in the dtypes it had.
  """
  if compute_dtype is None or jnp.dtype(compute_dtype) == jnp.float32:
    return loss_fn

  def loss(params, model_state, batch, rng, train):
    loss, (outputs, new_model_state) = loss_fn(
        cast_floats(params, compute_dtype), model_state, cast_floats(batch, compute_dtype),
        rng, train)
    new_model_state = jax.tree.map(lambda new, old: new.astype(old.dtype),
                                   new_model_state, model_state)
    return loss.astype(jnp.float32), (cast_floats(outputs, jnp.float32), new_model_state)

  return loss


def with_auxiliary_losses(loss_fn, auxiliary_losses: dict[str, str]):
  """``loss_fn`` whose gradient trains each top-level parameter group of
  ``auxiliary_losses`` (``{group: output}``, e.g. an adversary's) on the batch mean of
  ``loss_fn``'s per-example ``output`` alone, and every other parameter on the loss alone.

  The loss is computed with the groups' parameters held fixed (``stop_gradient``), and each
  group's output with all the other parameters held fixed, on the same batch and key (so
  the same samples): one value-and-gradient gives both updates, as if each player took its
  gradient step against the other's current parameters. Auxiliary evaluations leave the
  model state as the loss left it; the value returned is the loss plus the groups' means, so
  that the non-finite guard on ``loss`` watches all of them. None: ``loss_fn`` itself."""
  if not auxiliary_losses:
    return loss_fn

  def held(params, trained) -> dict:
    return {k: v if k in trained else jax.lax.stop_gradient(v) for k, v in params.items()}

  def loss(params, model_state, batch, rng, train):
    main = set(params) - set(auxiliary_losses)
    value, (outputs, new_model_state) = loss_fn(held(params, main), model_state, batch, rng,
                                                train)
    for group, output in auxiliary_losses.items():
      _, (group_outputs, _) = loss_fn(held(params, {group}), model_state, batch, rng, train)
      value = value + jnp.mean(group_outputs[output])
    return value, (outputs, new_model_state)

  return loss


def split_microbatches(tree, num: int):
  """Per-example arrays ``(B, ...)`` as ``num`` microbatches ``(num, B / num, ...)``;
  microbatch ``j`` holds examples ``j, j + num, j + 2 num, ...``, so when the batch is
  sharded over devices in equal contiguous blocks, every microbatch is too."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // num, num) + x.shape[1:]).swapaxes(0, 1),
                      tree)


def merge_microbatches(tree):
  """The inverse of ``split_microbatches``: ``(num, B / num, ...)`` back to ``(B, ...)``."""
  return jax.tree.map(lambda x: x.swapaxes(0, 1).reshape((-1,) + x.shape[2:]), tree)


def microbatched_value_and_grad(loss_fn, num: int):
  """``jax.value_and_grad(loss_fn, has_aux=True)`` over the batch in ``num`` equal
  microbatches, one after another (``lax.scan``): the loss and gradients are the means of
  the microbatches', equal to the whole batch's for a loss that is a mean over examples
  plus terms of the parameters alone. Working memory is that of one microbatch, which keeps
  activations in cache on CPUs. Each microbatch gets its own key (dropout and sampling
  differ from the unsplit batch), and model state runs through them in turn: batch norm
  normalizes with each microbatch's statistics ("ghost" batch norm)."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if num == 1:
    return grad_fn

  def value_and_grad(params, model_state, batch, rng, train):
    def accumulate(carry, microbatch_and_key):
      loss_sum, grads_sum, model_state = carry
      (loss, (outputs, model_state)), grads = grad_fn(params, model_state, *microbatch_and_key,
                                                      train)
      return (loss_sum + loss, jax.tree.map(jnp.add, grads_sum, grads), model_state), outputs

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params), model_state)
    inputs = (split_microbatches(batch, num), jax.random.split(rng, num))
    (loss, grads, model_state), outputs = jax.lax.scan(accumulate, zeros, inputs)
    grads = jax.tree.map(lambda g: g / num, grads)
    return (loss / num, (merge_microbatches(outputs), model_state)), grads

  return value_and_grad


def make_train_step(task, optimizer: optax.GradientTransformation, preprocess: Preprocess,
                    guards: tuple[str, ...] = ("loss", "grad_norm"), compute_dtype=None,
                    microbatches: int = 1):
  """Returns the pure ``train_step(state, batch) -> (state, metrics)``.

  ``guards`` are watched for non-finite values without a host sync: the metrics
  carry the first step at which each of ``loss``, ``grad_norm`` or ``params`` (after
  the update) was not finite, for the loop to read when it logs. ``compute_dtype``
  (e.g. ``jnp.bfloat16``) is the dtype of the forward and backward pass; parameters
  and optimizer state stay float32. ``microbatches > 1`` computes the gradient over that
  many equal parts of the batch in turn (``microbatched_value_and_grad``); preprocessing
  and the update still see the whole batch. The task's ``auxiliary_losses`` (parameter
  groups trained on an output of their own, ``with_auxiliary_losses``) are updated in the
  same step, by the optimizer's group of the same name when it has one.
  """
  collection = train_metrics_collection(task.metrics, guards)
  loss_fn = with_auxiliary_losses(mixed_precision_loss(task.loss_fn, compute_dtype),
                                  task.auxiliary_losses)
  grad_fn = microbatched_value_and_grad(loss_fn, microbatches)

  def train_step(state: TrainState, batch: dict):
    preprocess_rng, loss_rng = step_rngs(state)
    batch = preprocess(batch, preprocess_rng)
    (loss, (outputs, model_state)), grads = grad_fn(
        state.params, state.model_state, batch, loss_rng, True)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
    grad_norm = optax.global_norm(grads)
    watched = {"loss": loss, "grad_norm": grad_norm, "params": optax.global_norm(params)}
    metrics = collection.single_from_model_output(
        grad_norm=grad_norm, step=new_state.step,
        **{GUARD_PREFIX + g: ~jnp.isfinite(watched[g]) for g in guards}, **outputs)
    return new_state, metrics

  return train_step


def merge_stacked(metrics):
  """One metrics collection from a collection stacked over steps, merged in step order."""
  first, rest = jax.tree.map(lambda x: x[0], metrics), jax.tree.map(lambda x: x[1:], metrics)
  merged, _ = jax.lax.scan(lambda total, m: (total.merge(m), None), first, rest)
  return merged


def make_multi_step(train_step, batch_sharding=None):
  """Returns ``multi_step(state, data, indices) -> (state, metrics)``: ``train_step`` on
  the batches ``data[indices[i]]`` for each row ``i`` in turn (one ``lax.scan``).

  ``data`` is a whole (device-resident) split and ``indices`` the example indices of
  consecutive steps, so a call runs the same steps as the step-by-step path, with the
  metrics of all of them merged.
  """
  def multi_step(state: TrainState, data: dict, indices: jax.Array):
    # One gather of all the call's batches, before the loop: the loop body sees batches only.
    batches = jax.tree.map(lambda x: x[indices], data)
    if batch_sharding is not None:
      spec = jax.sharding.PartitionSpec(None, *batch_sharding.spec)
      batches = jax.lax.with_sharding_constraint(
          batches, jax.sharding.NamedSharding(batch_sharding.mesh, spec))
    state, metrics = jax.lax.scan(train_step, state, batches)
    return state, merge_stacked(metrics)

  return multi_step


def split_mask(batch: dict) -> tuple[dict, jax.Array]:
  """An eval batch without its ``mask`` (1 for real examples, 0 for padding), and the mask."""
  batch = dict(batch)
  return batch, batch.pop("mask")


def make_eval_step(task, preprocess: Preprocess):
  """Returns ``eval_step(state, batch, rng) -> metrics`` over a masked batch.

  ``batch["mask"]`` marks real examples; padding that fills the last batch to a
  fixed shape does not count.
  """
  collection = eval_metrics_collection(task.metrics)

  def eval_step(state: TrainState, batch: dict, rng: jax.Array):
    preprocess_rng, loss_rng = jax.random.split(rng)
    batch, mask = split_mask(batch)
    batch = preprocess(batch, preprocess_rng)
    _, (outputs, _) = task.loss_fn(state.params, state.model_state, batch, loss_rng, False)
    return collection.single_from_model_output(mask=mask, **outputs)

  return eval_step


def jit_steps(train_step, eval_step, replicated, batch_sharding, train_in_shardings=None):
  """Jits both steps once with explicit shardings; the train state is donated.

  ``train_in_shardings`` are those of the train step's inputs after the state
  (default: one batch sharded like ``batch_sharding``).
  """
  train = jax.jit(
      train_step,
      in_shardings=(replicated, *(train_in_shardings or (batch_sharding,))),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
  )
  evaluate = jax.jit(
      eval_step,
      in_shardings=(replicated, batch_sharding, replicated),
      out_shardings=replicated,
  )
  return train, evaluate
