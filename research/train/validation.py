"""Checks a whole config before anything loads or compiles; each problem is one line that
names the field and what it allows. The generic fields are checked here; each task checks
its own (``Task.validate_config``), the data side its text and tabular fields, and each
evaluator its own (``Evaluator.validate``)."""
import errno
import os
import tempfile

import jax
import ml_collections

from research import errors
from research.core import gate, optim, profiling
from research.data import preprocess, tabular, text
from research.evaluators import base as evaluators
from research.tasks import base as tasks_base

POSITIVE_INTS = ("batch_size", "eval_batch_size", "log_every_steps", "eval_every_steps",
                 "checkpoint_every_steps", "keep_checkpoints")

_require = errors.require  # the one-line error of a field that cannot work


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
  _require(opt.accumulate_steps >= 1, "optimizer.accumulate_steps", opt.accumulate_steps,
           "a positive integer")


PRECISIONS = ("float32", "bfloat16")
MATMUL_PRECISIONS = ("default", "float32", "tensorfloat32", "bfloat16")


def validate_speed(config: ml_collections.ConfigDict) -> None:
  """steps_per_call, microbatch_size, precision, matmul_precision and profile_steps."""
  k = config.steps_per_call
  _require(k >= 1, "steps_per_call", k, "a positive integer")
  for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    _require(config[field] % k == 0, field, config[field],
             f"a multiple of steps_per_call={k}")
  m = config.microbatch_size
  _require(m == 0 or (m > 0 and config.batch_size % m == 0 and m % jax.device_count() == 0),
           "microbatch_size", m, f"0 (whole batches) or a divisor of batch_size="
           f"{config.batch_size} that is a multiple of the {jax.device_count()} device(s)")
  _require(config.precision in PRECISIONS, "precision", config.precision, f"one of {PRECISIONS}")
  matmul_precision = config.get("matmul_precision", "default")
  _require(matmul_precision in MATMUL_PRECISIONS, "matmul_precision", matmul_precision,
           f"one of {MATMUL_PRECISIONS}")
  _require(profiling.parse_profile_steps(config.profile_steps) is not None, "profile_steps",
           config.profile_steps, "'' or 'START:END' with 0 <= START < END (steps)")


def validate_replicas(config: ml_collections.ConfigDict) -> None:
  seeds, rates = tuple(config.replicas.seeds), tuple(config.replicas.learning_rates)
  _require(all(isinstance(s, int) and s >= 0 for s in seeds), "replicas.seeds", seeds,
           "a tuple of non-negative integers")
  _require(all(isinstance(r, (int, float)) and r > 0 for r in rates), "replicas.learning_rates",
           rates, "a tuple of positive numbers")
  _require(not (seeds and rates) or len(seeds) == len(rates), "replicas.learning_rates", rates,
           f"as long as replicas.seeds={seeds} (replica i has seed i and learning rate i)")
  if seeds or rates:
    _require(config.steps_per_call == 1, "steps_per_call", config.steps_per_call,
             "1 when training replicas")


def validate_folds(config: ml_collections.ConfigDict) -> None:
  """data.folds (research/data/splits.py): off (num_folds 0), or K >= 2 folds and one of them."""
  folds = config.data.get("folds")
  if folds is None:
    return
  k = folds.num_folds
  _require(isinstance(k, int) and (k == 0 or k >= 2), "data.folds.num_folds", k,
           "0 (off) or an integer >= 2")
  if k:
    _require(isinstance(folds.fold, int) and 0 <= folds.fold < k, "data.folds.fold", folds.fold,
             f"an integer in [0, {k}) (num_folds={k})")
  _require(isinstance(folds.seed, int) and folds.seed >= 0, "data.folds.seed", folds.seed,
           "a non-negative integer")


def validate_names(config: ml_collections.ConfigDict) -> type:
  """The model (built from its fields, so a field it does not take is caught here), the task
  and the preprocessing ops the config names exist; returns the task class."""
  tasks_base.build_model(config)
  task_cls = tasks_base.task_class(config)
  for field in ("preprocess", "augment"):
    try:
      preprocess.parse(config.data[field])
    except errors.ConfigError as e:
      raise errors.ConfigError(f"data.{field}={config.data[field]!r}: {e}") from None
  return task_cls


def validate_evals(config: ml_collections.ConfigDict, task_cls) -> None:
  """Every evaluation names an evaluator this task can feed, with fields it takes; the gate
  is on a metric that some evaluation reports."""
  produced = {}
  for name, spec in config.get("evals", {}).items():
    if not evaluators.enabled(spec):
      continue
    cls = evaluators.evaluator_class(spec.type)
    every = spec.get("every_steps", 0)
    _require(isinstance(every, int) and every >= 0, f"evals.{name}.every_steps", every,
             "0 (only at the end) or a positive number of steps")
    if every:
      _require(every % config.steps_per_call == 0, f"evals.{name}.every_steps", every,
               f"a multiple of steps_per_call={config.steps_per_call}")
    data = spec.get("data", "val")
    _require(data in ("train", "val", "test") or isinstance(data, ml_collections.ConfigDict),
             f"evals.{name}.data", data, "train, val, test or a ConfigDict of data fields "
             "with a split")
    cls.validate(name, spec, task_cls)
    produced.update({f"{evaluators.prefix(name, spec)}/{m}": name
                     for m in cls.metric_names(spec, task_cls)})
  condition = gate.parse(config.gate)
  if condition:
    _require(condition[0] in produced, "gate", config.gate,
             f"a condition on a metric an evaluation reports: one of {sorted(produced)}")


def validate_workdir(workdir: str) -> None:
  """``workdir`` is a writable folder or can be made one; nothing is created here (a run
  refused later, e.g. for missing data, leaves no folder behind)."""
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    if not os.path.isdir(existing):
      raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    tempfile.TemporaryFile(dir=existing).close()
  except OSError as e:
    raise errors.ConfigError(
        f"--workdir={workdir!r} cannot be written ({e.strerror} at {existing}); it must be a "
        f"writable folder") from None


def validate(config: ml_collections.ConfigDict, workdir: str | None) -> None:
  """The whole config; ``workdir`` (None: not checked) must be writable."""
  validate_numbers(config)
  validate_speed(config)
  validate_replicas(config)
  validate_folds(config)
  task_cls = validate_names(config)
  text.validate_config(config)
  tabular.validate_config(config)
  task_cls.validate_config(config)
  validate_evals(config, task_cls)
  if workdir is not None:
    validate_workdir(workdir)
