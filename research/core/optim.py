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


# The fields a parameter group's optimizer (``optimizer.groups.NAME``) may set; those it
# leaves out are the main optimizer's.
GROUP_FIELDS = ("name", "learning_rate", "schedule", "warmup_steps", "momentum", "nesterov",
                "b1", "b2", "weight_decay", "grad_clip_norm")


def make_transform(config: ml_collections.ConfigDict, num_updates: int,
                   learning_rate=None) -> optax.GradientTransformation:
  """``config.name`` (sgd, adam, adamw) with its schedule over ``num_updates``, after
  gradient clipping and weight decay when the config asks for them."""
  schedule = make_schedule(config, num_updates, learning_rate)
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
  return optax.chain(*chain, base)


def group_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The optimizer fields of parameter group ``name``: ``config.groups.NAME`` over the
  main optimizer's ``GROUP_FIELDS``."""
  return ml_collections.ConfigDict({**{field: config[field] for field in GROUP_FIELDS},
                                    **config.groups[name].to_dict()})


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   learning_rate=None) -> optax.GradientTransformation:
  """Builds ``config.name`` (sgd, adam, adamw) with clipping and a schedule.

  With ``config.accumulate_steps = k > 1`` each train step is a micro-batch: the
  gradients of ``k`` consecutive steps are averaged and applied as one update
  (``optax.MultiSteps``), so the effective batch is ``k`` times the batch size and the
  schedule counts updates (``total_steps / k``).

  ``config.frozen`` (optional, default none): top-level parameter submodules (e.g.
  ``("encoder", "posterior")``) whose updates are zero (``partition``).

  ``config.groups`` (optional, default none): top-level parameter submodules with an
  optimizer of their own, ``{NAME: {field: value}}`` over the fields ``GROUP_FIELDS``,
  those left out being this optimizer's (e.g. FactorVAE's ``discriminator``: Adam at
  1e-4 with b1 0.5, b2 0.9). Each has its own state and schedule (``learning_rate``, the
  replicas' learning rate, is the main optimizer's alone); skipping non-finite updates and
  accumulation apply to all of them together.
  """
  accumulate = config.accumulate_steps
  num_updates = -(-total_steps // accumulate)
  groups = {name: make_transform(group_config(config, name), num_updates)
            for name in config.get("groups", {})}
  optimizer = partition(make_transform(config, num_updates, learning_rate), groups,
                        tuple(config.get("frozen", ())))
  if config.skip_nonfinite:  # skip updates with non-finite gradients, up to a limit in a row
    optimizer = optax.apply_if_finite(optimizer, config.max_consecutive_nonfinite)
  if accumulate > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulate)
  return optimizer


TRAINED, FROZEN = "trained", "frozen"  # the labels of the main group and the frozen one
GROUP_LABEL = "group_{}"  # a parameter group's label (never one of the two above)


def partition(optimizer: optax.GradientTransformation,
              groups: dict[str, optax.GradientTransformation],
              frozen: tuple[str, ...]) -> optax.GradientTransformation:
  """``optimizer`` for every parameter but those under the top-level submodules ``frozen``,
  whose updates are zero and which keep no optimizer state, and those under each of
  ``groups``, updated by its own transformation (``optax.multi_transform``); a name the
  parameters lack is a ConfigError when the optimizer first sees them. Neither: the
  optimizer itself, so runs without them keep their optimizer state's structure."""
  if not frozen and not groups:
    return optimizer
  transforms = {TRAINED: optimizer, **({FROZEN: optax.set_to_zero()} if frozen else {}),
                **{GROUP_LABEL.format(name): transform for name, transform in groups.items()}}

  def label_of(top: str) -> str:
    if top in frozen:
      return FROZEN
    return GROUP_LABEL.format(top) if top in groups else TRAINED

  def labels(params):
    for field, names in (("frozen", frozen), ("groups", tuple(groups))):
      unknown = sorted(set(names) - set(params))
      if unknown:
        raise errors.ConfigError(f"optimizer.{field} names {unknown}, which the model's "
                                 f"parameters lack; its top-level submodules are "
                                 f"{sorted(params)}")
    return jax.tree_util.tree_map_with_path(lambda path, _: label_of(path[0].key), params)

  return optax.multi_transform(transforms, labels)
