"""Optax optimizers and learning-rate schedules from the config."""
import jax
import ml_collections
import optax

from research import errors

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")


def make_schedule(config: ml_collections.ConfigDict, total_steps: int,
                  learning_rate=None) -> optax.Schedule:
  """``config.schedule`` with warm-up, peaking at ``learning_rate`` (default: the config's;
  an array under vmap for replicas with their own learning rates)."""
  lr = config.learning_rate if learning_rate is None else learning_rate
  warmup = config.warmup_steps
  if config.schedule == "constant":
    decay = optax.constant_schedule(lr)
  elif config.schedule == "cosine":
    decay = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1))
  elif config.schedule == "linear":
    decay = optax.linear_schedule(lr, 0.0, max(total_steps - warmup, 1))
  else:
    raise errors.ConfigError(f"optimizer.schedule must be one of {SCHEDULES}, not {config.schedule!r}")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   learning_rate=None) -> optax.GradientTransformation:
  """Builds ``config.name`` (sgd, adam, adamw) with clipping and a schedule.

  With ``config.accumulate_steps = k > 1`` each train step is a micro-batch: the
  gradients of ``k`` consecutive steps are averaged and applied as one update
  (``optax.MultiSteps``), so the effective batch is ``k`` times the batch size and the
  schedule counts updates (``total_steps / k``).

  ``config.frozen`` (optional, default none): top-level parameter submodules (e.g.
  ``("encoder", "posterior")``) whose updates are zero (``freeze``).
  """
  accumulate = config.accumulate_steps
  schedule = make_schedule(config, -(-total_steps // accumulate), learning_rate)
  if config.name == "sgd":
    base = optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
  elif config.name == "adam":
    base = optax.adam(schedule, b1=config.b1, b2=config.b2)
  elif config.name == "adamw":
    base = optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay)
  else:
    raise errors.ConfigError(f"optimizer.name must be one of {OPTIMIZERS}, not {config.name!r}")
  chain = []
  if config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.weight_decay > 0 and config.name != "adamw":
    chain.append(optax.add_decayed_weights(config.weight_decay))
  optimizer = freeze(optax.chain(*chain, base), tuple(config.get("frozen", ())))
  if config.skip_nonfinite:  # skip updates with non-finite gradients, up to a limit in a row
    optimizer = optax.apply_if_finite(optimizer, config.max_consecutive_nonfinite)
  if accumulate > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulate)
  return optimizer


def freeze(optimizer: optax.GradientTransformation,
           frozen: tuple[str, ...]) -> optax.GradientTransformation:
  """``optimizer`` for every parameter but those under the top-level submodules ``frozen``,
  whose updates are zero and which keep no optimizer state (``optax.multi_transform``); a
  name the parameters lack is a ConfigError when the optimizer first sees them."""
  if not frozen:
    return optimizer

  def labels(params):
    unknown = sorted(set(frozen) - set(params))
    if unknown:
      raise errors.ConfigError(f"optimizer.frozen names {unknown}, which the model's parameters "
                               f"lack; its top-level submodules are {sorted(params)}")
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if path[0].key in frozen else "trained", params)

  return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)
