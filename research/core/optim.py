"""Optax optimizers and learning-rate schedules from the config."""
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
  optimizer = optax.chain(*chain, base)
  if config.skip_nonfinite:  # skip updates with non-finite gradients, up to a limit in a row
    optimizer = optax.apply_if_finite(optimizer, config.max_consecutive_nonfinite)
  if accumulate > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulate)
  return optimizer
