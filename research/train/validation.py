"""Checks a whole config before anything loads or compiles; each problem is one line that
names the field and what it allows. The generic fields are checked here; each task checks
its own (``Task.validate_config``), the data side its text and tabular fields, and each
evaluator its own (``Evaluator.validate``). ``check_eval_memory`` runs once the data is loaded,
before anything is written."""
import errno
import math
import os
import re
import subprocess
import sys
import tempfile

import jax
import ml_collections
import numpy as np

from research import errors
from research.core import gate, optim, profiling
from research.data import preprocess, tabular, text
from research.evaluators import base as evaluators
from research.tasks import base as tasks_base

POSITIVE_INTS = ("batch_size", "eval_batch_size", "log_every_steps", "eval_every_steps",
                 "checkpoint_every_steps", "keep_checkpoints")

_require = errors.require  # the one-line error of a field that cannot work

# Seeds are traced as int32 wherever a jitted function takes them (replicas vmap theirs),
# and numpy's generators take no negative ones.
SEED_LIMIT = 2**31


def is_seed(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT


def validate_numbers(config: ml_collections.ConfigDict) -> None:
  _require(is_seed(config.seed), "seed", config.seed, "an integer in [0, 2**31)")
  for field in POSITIVE_INTS:
    _require(config[field] > 0, field, config[field], "a positive integer")
  _require(config.total_steps == -1 or config.total_steps > 0, "total_steps", config.total_steps,
           "-1 (use num_epochs) or a positive number of steps")
  if config.total_steps == -1:
    _require(math.isfinite(config.num_epochs) and config.num_epochs > 0, "num_epochs",
             config.num_epochs, "a finite positive number of epochs")
  devices, processes = jax.device_count(), jax.process_count()
  for field in ("batch_size", "eval_batch_size"):
    _require(config[field] % devices == 0 and config[field] % processes == 0, field, config[field],
             f"a multiple of the {devices} device(s) and {processes} process(es)")
  opt = config.optimizer
  validate_optimizer_fields(opt, "optimizer")
  _require(opt.accumulate_steps >= 1, "optimizer.accumulate_steps", opt.accumulate_steps,
           "a positive integer")
  frozen = opt.get("frozen", ())
  _require(isinstance(frozen, (tuple, list)) and all(isinstance(m, str) for m in frozen),
           "optimizer.frozen", frozen, "a tuple of top-level submodule names (parameters "
           "that stay as they are)")
  validate_optimizer_groups(opt, tuple(frozen))


def validate_optimizer_fields(opt: ml_collections.ConfigDict, prefix: str) -> None:
  """The fields of one optimizer (the main one or a parameter group's), named ``PREFIX.*``."""
  _require(opt.learning_rate > 0, f"{prefix}.learning_rate", opt.learning_rate, "positive")
  _require(opt.name in optim.OPTIMIZERS, f"{prefix}.name", opt.name,
           f"one of {optim.OPTIMIZERS}")
  _require(opt.schedule in optim.SCHEDULES, f"{prefix}.schedule", opt.schedule,
           f"one of {optim.SCHEDULES}")
  for field in ("warmup_steps", "weight_decay", "grad_clip_norm"):
    _require(opt[field] >= 0, f"{prefix}.{field}", opt[field], "zero or positive")
  for field in ("momentum", "b1", "b2"):
    _require(0 <= opt[field] < 1, f"{prefix}.{field}", opt[field], "in [0, 1)")


def validate_optimizer_groups(opt: ml_collections.ConfigDict, frozen: tuple[str, ...]) -> None:
  """``optimizer.groups`` (optional): ``{submodule: {field: value}}``, each with fields of
  ``optim.GROUP_FIELDS`` only, none frozen, and valid once the main optimizer's fill the rest."""
  groups = opt.get("groups", {})
  _require(isinstance(groups, (dict, ml_collections.ConfigDict)), "optimizer.groups", groups,
           "a dict of top-level submodule names to their optimizer's fields")
  for name, fields in groups.items():
    prefix = f"optimizer.groups.{name}"
    _require(isinstance(fields, (dict, ml_collections.ConfigDict)), prefix, fields,
             f"a dict of optimizer fields among {optim.GROUP_FIELDS}")
    unknown = sorted(set(fields) - set(optim.GROUP_FIELDS))
    _require(not unknown, prefix, sorted(fields), f"a dict of optimizer fields among "
             f"{optim.GROUP_FIELDS} (not {unknown})")
    _require(name not in frozen, "optimizer.groups", sorted(groups),
             f"free of the frozen submodules {frozen}")
    validate_optimizer_fields(optim.group_config(opt, name), prefix)


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
  _require(all(is_seed(s) for s in seeds), "replicas.seeds", seeds,
           "a tuple of integers in [0, 2**31)")
  _require(all(isinstance(r, (int, float)) and r > 0 for r in rates), "replicas.learning_rates",
           rates, "a tuple of positive numbers")
  _require(not (seeds and rates) or len(seeds) == len(rates), "replicas.learning_rates", rates,
           f"as long as replicas.seeds={seeds} (replica i has seed i and learning rate i)")
  labels = config.replicas.get("train_labels", ())
  validate_replica_labels(config, labels, seeds or rates)
  if seeds or rates or labels:
    _require(config.steps_per_call == 1, "steps_per_call", config.steps_per_call,
             "1 when training replicas")


def validate_replica_labels(config: ml_collections.ConfigDict, labels, others: tuple) -> None:
  """``replicas.train_labels``: one non-empty tuple of class ids per replica, as many as the
  seeds or rates, on data whose preprocessing is not fitted to the training rows (a
  tabular fit or tokenizer would be one for all replicas, unlike their single runs)."""
  _require(all(isinstance(c, (tuple, list)) and len(c) > 0 and
               all(isinstance(k, int) and k >= 0 for k in c) for c in labels),
           "replicas.train_labels", labels,
           "a tuple of class-id tuples, one per replica, e.g. ((0,), (1,))")
  _require(not (labels and others) or len(labels) == len(others), "replicas.train_labels",
           labels, f"one per replica: {len(others)} (replica i has seed, learning rate and "
           f"training classes i)")
  fitted = tabular.is_tabular(config.data) or text.is_text(config.data) or \
      config.data.get("labelled_per_class", 0)
  _require(not (labels and fitted), "replicas.train_labels", labels,
           "empty for tabular, text and semi-supervised data, whose preprocessing or labelled "
           "subset is drawn from the training rows: train a run per class")


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


def batch_features(data: ml_collections.ConfigDict) -> tuple[str, ...] | None:
  """The features of the batches the preprocessing ops see: ``data.features``, or None for
  text and tabular data (encoded into other features once loaded)."""
  if text.is_text(data) or tabular.is_tabular(data):
    return None
  return tuple(data.features)


def validate_names(config: ml_collections.ConfigDict) -> type:
  """The model (built from its fields, so a field it does not take is caught here), the task
  and the preprocessing ops the config names exist, the ops with arguments they take;
  returns the task class."""
  tasks_base.build_model(config)
  task_cls = tasks_base.task_class(config)
  for field in ("preprocess", "augment"):
    try:
      preprocess.parse(config.data[field], batch_features(config.data))
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


def xla_refusal(stderr: str) -> str:
  """Why XLA refused its flags, from the log of a process it ended."""
  unknown = re.search(r"Unknown flags? in XLA_FLAGS: (.*)", stderr)
  if unknown:
    return f"XLA does not know {unknown[1].strip()}"
  logged = re.findall(r"^[EF]\d{4} [^\]]*\] (.*)$", stderr, re.MULTILINE)
  lines = [line.strip() for line in stderr.splitlines() if line.strip()]
  return f"XLA refused them: {(logged or lines or ['no reason given'])[0]}"


_CHECKED_XLA_FLAGS = set()  # the flags this process has checked (its XLA parses them once)


def check_xla_flags(config: ml_collections.ConfigDict) -> None:
  """``config.xla_flags`` are flags XLA takes. XLA ends the whole process when JAX starts its
  backend with one it does not, so once they are in XLA_FLAGS (``launch.apply_xla_flags``),
  before the backend starts, a short child process starts a CPU backend with them first."""
  flags = config.get("xla_flags", "")
  if not flags or flags not in os.environ.get("XLA_FLAGS", "") or flags in _CHECKED_XLA_FLAGS:
    return
  env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  try:
    child = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env,
                           capture_output=True, text=True, timeout=120)
  except subprocess.TimeoutExpired:
    return  # no verdict: the run's own backend start is the check
  if child.returncode:
    _require(False, "xla_flags", flags, f"flags XLA takes ({xla_refusal(child.stderr)})")
  _CHECKED_XLA_FLAGS.add(flags)


# Batches whose inputs alone take more than this share of a device's memory are estimated
# by compiling the evaluation step (a compilation); smaller ones are not checked further.
COMPILED_ESTIMATE_SHARE = 1 / 1024


def device_memory() -> tuple[int, str]:
  """The bytes one local device can hold and what they are: the accelerator's memory, or
  (CPU) the host's available RAM, shared by this process's devices."""
  device = jax.local_devices()[0]
  stats = device.memory_stats()
  if stats and stats.get("bytes_limit"):
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} memory"
  try:
    import psutil
    host = psutil.virtual_memory().available
  except ImportError:
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return host // jax.local_device_count(), "the host's available RAM"


def compiled_eval_bytes(config: ml_collections.ConfigDict, input_spec: dict,
                        batch: int) -> tuple[int, int]:
  """The bytes the metrics evaluation step needs on ``batch`` examples as XLA compiles it
  (nothing is allocated), and the model variables' among them: a lower bound for every
  evaluation, as each runs the model over whole batches."""
  from research.core import step as step_lib, state as state_lib
  task = tasks_base.make_task(config)
  prep = preprocess.parse(config.data.preprocess)
  shapes = lambda n: {k: jax.ShapeDtypeStruct((n, *shape), jax.dtypes.canonicalize_dtype(dtype))
                      for k, (shape, dtype) in input_spec.items()}
  init = state_lib.make_init(task, optim.make_optimizer(config.optimizer, 1), prep)
  state = jax.eval_shape(init, 0, shapes(1))
  inputs = {**shapes(batch), "mask": jax.ShapeDtypeStruct((batch,), "float32")}
  compiled = jax.jit(step_lib.make_eval_step(task, prep)).lower(
      state, inputs, jax.ShapeDtypeStruct((2,), "uint32")).compile()
  memory = compiled.memory_analysis()
  variable_bytes = sum(math.prod(x.shape) * x.dtype.itemsize
                       for x in jax.tree.leaves((state.params, state.model_state)))
  if memory is None:
    return 0, variable_bytes
  return (memory.temp_size_in_bytes + memory.argument_size_in_bytes
          + memory.output_size_in_bytes), variable_bytes


def check_eval_memory(config: ml_collections.ConfigDict, input_spec: dict) -> None:
  """``eval_batch_size`` fits in a device's memory: the batch's inputs (``input_spec``: per
  example ``{feature: (shape, dtype)}``) and, when those alone take a sizable share, the
  evaluation step as compiled. Runs once the data is loaded, before anything is written."""
  if not any(evaluators.enabled(spec) for spec in config.get("evals", {}).values()):
    return
  size = config.eval_batch_size
  per_device = size // jax.device_count()
  available, where = device_memory()
  per_example = sum(math.prod(shape) * np.dtype(dtype).itemsize
                    for shape, dtype in input_spec.values())
  needed, fixed, what = per_device * per_example, 0, "its inputs"
  if available * COMPILED_ESTIMATE_SHARE < needed <= available:
    needed, fixed = compiled_eval_bytes(config, input_spec, per_device)
    what = "the evaluation step as compiled"
  per_example = max(1, (needed - fixed) / per_device)
  fits = max(1, int((available / 2 - fixed) // per_example))  # examples a device, with room
  suggestion = jax.device_count() * 2 ** (fits.bit_length() - 1)
  _require(needed <= available, "eval_batch_size", size,
           f"a batch that fits in memory: {per_device} examples a device need "
           f"{errors.format_bytes(needed)} ({what}) and a device has "
           f"{errors.format_bytes(available)} ({where}); e.g. eval_batch_size={suggestion}")


def validate(config: ml_collections.ConfigDict, workdir: str | None) -> None:
  """The whole config; ``workdir`` (None: not checked) must be writable."""
  check_xla_flags(config)  # before anything starts JAX's backend
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
