"""Checks a config before anything loads or compiles; each problem is one line that
names the field and what it allows."""
import os
import tempfile

import jax
import ml_collections

from research.core import errors, gate, optim, registry
from research.data import preprocess

POSITIVE_INTS = ("batch_size", "eval_batch_size", "log_every_steps", "eval_every_steps",
                 "checkpoint_every_steps", "keep_checkpoints")


def _require(ok: bool, field: str, value, allowed: str) -> None:
  if not ok:
    raise errors.ConfigError(f"{field}={value!r} is not allowed; it must be {allowed}")


def validate_numbers(config: ml_collections.ConfigDict) -> None:
  for field in POSITIVE_INTS:
    _require(config[field] > 0, field, config[field], "a positive integer")
  _require(config.total_steps == -1 or config.total_steps > 0, "total_steps", config.total_steps,
           "-1 (use num_epochs) or a positive number of steps")
  if config.total_steps == -1:
    _require(config.num_epochs > 0, "num_epochs", config.num_epochs, "positive")
  devices, processes = jax.device_count(), jax.process_count()
  for field in ("batch_size", "eval_batch_size"):
    _require(config[field] % devices == 0 and config[field] % processes == 0, field, config[field],
             f"a multiple of the {devices} device(s) and {processes} process(es)")
  opt = config.optimizer
  _require(opt.learning_rate > 0, "optimizer.learning_rate", opt.learning_rate, "positive")
  _require(opt.name in optim.OPTIMIZERS, "optimizer.name", opt.name, f"one of {optim.OPTIMIZERS}")
  _require(opt.schedule in optim.SCHEDULES, "optimizer.schedule", opt.schedule,
           f"one of {optim.SCHEDULES}")
  for field in ("warmup_steps", "weight_decay", "grad_clip_norm"):
    _require(opt[field] >= 0, f"optimizer.{field}", opt[field], "zero or positive")
  for field in ("momentum", "b1", "b2"):
    _require(0 <= opt[field] < 1, f"optimizer.{field}", opt[field], "in [0, 1)")


def validate_names(config: ml_collections.ConfigDict) -> None:
  """The model, task and preprocessing ops the config names exist."""
  registry.import_member("models", config.model.name, "Model")
  task_cls = registry.import_member("tasks", config.task.name, "Task")
  if gate.parse(config.gate):
    split, _, metric = gate.parse(config.gate)[0].partition("/")
    _require(split in ("val", "test") and metric in task_cls.metrics, "gate", config.gate,
             f"a condition on val/ or test/ of {sorted(task_cls.metrics)}")
  for field in ("preprocess", "augment"):
    try:
      preprocess.parse(config.data[field])
    except errors.ConfigError as e:
      raise errors.ConfigError(f"data.{field}={config.data[field]!r}: {e}") from None


def validate_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    tempfile.TemporaryFile(dir=workdir).close()
  except OSError as e:
    raise errors.ConfigError(
        f"--workdir={workdir!r} cannot be written ({e.strerror}); it must be a writable folder"
    ) from None


def validate(config: ml_collections.ConfigDict, workdir: str) -> None:
  validate_numbers(config)
  validate_names(config)
  validate_workdir(workdir)
