"""Checks a config before anything loads or compiles; each problem is one line that
names the field and what it allows."""
import os
import tempfile

import jax
import ml_collections

from research.core import errors, gate, optim, registry
from research.data import preprocess, text

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
  if m and config.task.get("kl_warmup_steps", 0):
    _require(m == config.batch_size, "microbatch_size", m,
             "0 with task.kl_warmup_steps > 0 (the warm-up counts loss evaluations)")
  _require(config.precision in PRECISIONS, "precision", config.precision, f"one of {PRECISIONS}")
  matmul_precision = config.get("matmul_precision", "default")
  _require(matmul_precision in MATMUL_PRECISIONS, "matmul_precision", matmul_precision,
           f"one of {MATMUL_PRECISIONS}")
  _require(parse_profile_steps(config.profile_steps) is not None, "profile_steps",
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


def parse_profile_steps(spec: str) -> tuple[int, int] | tuple[()] | None:
  """``"START:END"`` as ``(START, END)``, ``""`` as ``()``, anything else as None."""
  if not spec:
    return ()
  start, sep, end = spec.partition(":")
  if not (sep and start.strip().isdigit() and end.strip().isdigit()):
    return None
  start, end = int(start), int(end)
  return (start, end) if start < end else None


def validate_names(config: ml_collections.ConfigDict) -> None:
  """The model, task and preprocessing ops the config names exist."""
  registry.import_member("models", config.model.name, "Model")
  task_cls = registry.import_member("tasks", config.task.name, "Task")
  if gate.parse(config.gate):
    split, _, metric = gate.parse(config.gate)[0].partition("/")
    test_metrics = sorted([*task_cls.metrics, *task_cls.report_metrics])
    _require((split == "val" and metric in task_cls.metrics)
             or (split == "test" and metric in test_metrics), "gate", config.gate,
             f"a condition on val/ of {sorted(task_cls.metrics)} or on test/ of {test_metrics}")
  for field in ("preprocess", "augment"):
    try:
      preprocess.parse(config.data[field])
    except errors.ConfigError as e:
      raise errors.ConfigError(f"data.{field}={config.data[field]!r}: {e}") from None


def validate_text(config: ml_collections.ConfigDict) -> None:
  """The text fields (``config.data.text``, research/data/text.py) of a text dataset."""
  if not text.is_text(config.data):
    return
  data, spec = config.data, config.data.text
  _require(spec.feature in data.features, "data.text.feature", spec.feature,
           f"one of data.features {tuple(data.features)}")
  _require(len(spec.labels) > 0 and all(n in data.features for n in spec.labels),
           "data.text.labels", tuple(spec.labels),
           f"one or more of data.features {tuple(data.features)}")
  _require(spec.vocab_size >= 3, "data.text.vocab_size", spec.vocab_size,
           "at least 3 (<pad>, <unk> and one word)")
  _require(spec.min_count >= 1, "data.text.min_count", spec.min_count, "a positive integer")
  _require(spec.max_length >= 1, "data.text.max_length", spec.max_length, "a positive integer")
  inputs = tuple(config.task.get("inputs", ("image",)))
  _require(set(inputs) <= {"tokens", "length"}, "task.inputs", inputs,
           "drawn from ('tokens', 'length'): what a text dataset feeds the model")
  vocab = config.model.get("vocab_size", spec.vocab_size)
  _require(vocab >= spec.vocab_size, "model.vocab_size", vocab,
           f"at least data.text.vocab_size={spec.vocab_size}")


def validate_vae(config: ml_collections.ConfigDict) -> None:
  """The VAE task's fields (research/tasks/vae.py): likelihood, objective, samples, beta."""
  if config.task.name != "vae":
    return
  from research.tasks import likelihoods
  task = config.task
  _require(task.likelihood in likelihoods.NLL, "task.likelihood", task.likelihood,
           f"one of {sorted(likelihoods.NLL)}")
  binarized = "binarize" in config.data.preprocess
  _require(binarized == (task.likelihood == "bernoulli"), "task.likelihood", task.likelihood,
           "bernoulli for binarized images (data.preprocess with binarize), logistic or "
           "categorical for grey levels")
  _require(task.objective in ("elbo", "iwae"), "task.objective", task.objective, "elbo or iwae")
  _require(task.num_samples >= 1, "task.num_samples", task.num_samples, "a positive integer")
  _require(task.beta >= 0, "task.beta", task.beta, "zero or positive")
  _require(task.kl_warmup_steps >= 0, "task.kl_warmup_steps", task.kl_warmup_steps,
           "zero (no warm-up) or a positive number of steps")
  _require(task.nll_chunk >= 1, "task.nll_chunk", task.nll_chunk, "a positive integer")
  _require(task.nll_samples >= 0 and task.nll_samples % task.nll_chunk == 0, "task.nll_samples",
           task.nll_samples, f"0 (skip the test NLL) or a multiple of task.nll_chunk={task.nll_chunk}")
  gate_condition = gate.parse(config.gate)
  if gate_condition and gate_condition[0].startswith("test/nll"):
    _require(task.nll_samples > 0, "task.nll_samples", task.nll_samples,
             f"positive: the gate {config.gate!r} needs the test NLL")
  num_classes = config.model.get("num_classes", 0)
  _require(num_classes >= 0, "model.num_classes", num_classes, "0 (unconditional) or positive")
  if num_classes:
    _require(-1 <= task.sample_class < num_classes, "task.sample_class", task.sample_class,
             f"-1 (one class per row) or a class below model.num_classes={num_classes}")
    _require("label" in config.data.features, "data.features", tuple(config.data.features),
             "a list with label for a conditional model (model.num_classes > 0)")
  else:
    _require(task.sample_class == -1, "task.sample_class", task.sample_class,
             "-1 for an unconditional model (model.num_classes=0)")


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
  validate_speed(config)
  validate_replicas(config)
  validate_names(config)
  validate_text(config)
  validate_vae(config)
  validate_workdir(workdir)
