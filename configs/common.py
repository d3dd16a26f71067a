"""What every config shares: the defaults (``base_config``), the config argument
(``parse_arg``), one evaluation's entry (``periodic_eval``, ``final_eval``), the dataset
tables, the digits shrink (``select_dataset``) and the tabular data (``tabular_dataset``).

Each config file defines ``get_config(arg=None)`` and states its own task, model and
evaluations; ``arg`` is the text after a colon in ``--config=NAME:ARG``, read by
``parse_arg``: ``KEY=VALUE`` pairs joined by commas, or bare values such as ``digits``
(``--config=cnn:digits`` is ``--config=cnn:dataset=digits``).
"""
import ast
import os

import ml_collections
from ml_collections import config_dict

# How convolutional models run their convolutions (research/models/layers.py:Conv): auto
# (im2col matmuls on CPU, XLA's convolution elsewhere), xla or im2col.
CONV_IMPL = "auto"

# XLA flags for the ResNet's XLA convolutions on CPU (config.xla_flags): convolutions stay
# out of XLA:CPU's YNNPACK library fusions (its default), which are slow for its 3x3
# convolutions; dots, element-wise ops and reductions still go there. ResNet-20: 278 ->
# 416-431 examples/s on the 2-core CPU. Measure before using it elsewhere: it slows
# conv_vae and vit (-13%, -19%) and the CNNs' im2col microbatches. GPUs and TPUs ignore it.
# benchmarks/RESULTS.md has the measurements.
RESNET_XLA_CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT,"
                        "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE")

# Image datasets the configs' ARG may name (any other works through --config.data.name).
IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")


def base_config() -> ml_collections.ConfigDict:
  """The defaults every run shares; a config changes what differs and sets its task,
  model and evaluations."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 128  # global, over all devices and processes
  config.eval_batch_size = 1000
  config.num_epochs = 10.0
  config.total_steps = -1  # > 0 overrides num_epochs
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.gate = ""  # e.g. "test/accuracy>=0.99": the run fails when it is not met

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"
  config.data.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.download = True  # as TFDS: an unprepared dataset is downloaded (seconds to fail offline)
  # Splits read once are kept here as .npz and later runs load them without tf.data; "": off.
  config.data.cache_dir = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"),
                                       "research", "datasets")
  config.data.train_split = "train[:90%]"
  config.data.val_split = "train[90%:]"  # carved from train: test is touched only at the end
  config.data.test_split = "test"
  config.data.features = ("image", "label")
  config.data.preprocess = "scale(0, 1)"  # every split, inside the jitted step
  config.data.augment = ""  # training only, after preprocess, e.g. "random_shift(2)"

  config.model = ml_collections.ConfigDict()
  config.task = ml_collections.ConfigDict()

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 0
  config.optimizer.momentum = 0.9  # sgd only
  config.optimizer.nesterov = False
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.weight_decay = 0.0
  config.optimizer.grad_clip_norm = 0.0  # 0: no clipping
  config.optimizer.skip_nonfinite = False  # skip updates whose gradients are not finite
  config.optimizer.max_consecutive_nonfinite = 10  # ... then stop the run
  config.optimizer.accumulate_steps = 1  # k > 1: average k steps' gradients per update

  # Speed (see README "Speed").
  config.steps_per_call = 1  # k > 1: training data on device, k steps per jitted call
  config.microbatch_size = 0  # m > 0: the step takes each batch's gradient in parts of m examples
  config.precision = "float32"  # or "bfloat16": forward/backward dtype; params stay float32
  # "bfloat16": matmuls round their operands to bfloat16 and accumulate in float32, all else
  # float32 (research/models/matmul.py; the CNN 1.5x faster on a CPU with AMX); "default": JAX's.
  config.matmul_precision = "default"
  config.compilation_cache_dir = ""  # a folder: persistent XLA cache shared by runs
  config.profile_steps = ""  # "START:END": a jax.profiler trace of those steps in WORKDIR/profile
  config.xla_flags = ""  # extra XLA_FLAGS for this run, set before JAX starts (launch.py)

  # What is evaluated, when and on which data (research/evaluators/base.py): one entry per
  # evaluation; each config lists its own (periodic_eval and final_eval build one).
  config.evals = ml_collections.ConfigDict()

  # vmap-parallel replicas of the run (research/train/replicas.py): one jitted step trains
  # a replica per seed and/or learning rate; empty: a single run.
  config.replicas = ml_collections.ConfigDict()
  config.replicas.seeds = ()
  config.replicas.learning_rates = ()
  return config


def _parse_value(key: str, text: str, default):
  """``text`` as a Python literal of ``default``'s type (str when not a literal)."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(default, bool):
    flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in flags:
      raise ValueError(f"{key} takes True or False, not {text!r}")
    return flags[text.lower()]
  if isinstance(default, str):
    return value if isinstance(value, str) else text
  if isinstance(default, int):
    if not isinstance(value, int) or isinstance(value, bool):
      raise ValueError(f"{key} takes an integer, not {text!r}")
    return value
  if isinstance(default, float):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise ValueError(f"{key} takes a number, not {text!r}")
    return float(value)
  return value


def parse_arg(arg: str | None, *, choices: dict[str, tuple] | None = None,
              **defaults) -> ml_collections.ConfigDict:
  """The config argument (``NAME:ARG``) as a ConfigDict of ``defaults``' keys, like
  big_vision's ``configs.common.parse_arg``.

  ``arg`` is ``KEY=VALUE`` pairs joined by commas; a value is read as a Python literal
  (int, float, bool, quoted str) of its default's type, else kept as text. A bare
  ``VALUE`` (no ``=``) sets the first key whose ``choices`` contain it, so that
  ``digits`` means ``dataset=digits`` and ``iwae_arch,digits`` also sets ``preset``.
  ``choices`` maps keys to their allowed values (besides the default). Unknown keys or
  values, and a key given two different values, raise a one-line ValueError naming
  what is allowed.

      arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": IMAGE_DATASETS})
  """
  choices = {k: tuple(v) for k, v in (choices or {}).items()}
  if set(choices) - set(defaults):
    raise TypeError(f"choices for keys without a default: {sorted(set(choices) - set(defaults))}")

  def allowed() -> str:
    parts = []
    for key, default in defaults.items():
      values = "|".join(str(v) for v in choices[key]) if key in choices else "VALUE"
      parts.append(f"{key}={values} (default {default if default != '' else 'none'})")
    return "allowed: " + ", ".join(parts) + ("; a bare value sets the key that allows it"
                                             if choices else "")

  def reject(token: str, why: str = ""):
    raise ValueError(f"unknown config argument {token!r}{': ' + why if why else ''}; {allowed()}")

  result = dict(defaults)
  given = {}
  for token in (t.strip() for t in (arg or "").split(",")):
    if not token:
      continue
    if "=" in token:
      key, _, text = (part.strip() for part in token.partition("="))
      if key not in defaults:
        reject(token, f"no key {key!r}")
      try:
        value, why = _parse_value(key, text, defaults[key]), ""
      except ValueError as e:
        why = str(e)
      if why:
        reject(token, why)
      if key in choices and value not in choices[key] and value != defaults[key]:
        reject(token)
    else:
      key = next((k for k in defaults if token in choices.get(k, ())), None)
      if key is None:
        reject(token)
      value = token
    if key in given and given[key] != value:
      raise ValueError(f"config argument {arg!r} sets {key} twice ({given[key]!r} and "
                       f"{value!r}); {allowed()}")
    given[key] = result[key] = value
  return ml_collections.ConfigDict(result)


def periodic_eval(config: ml_collections.ConfigDict, type_name: str, data: str = "val",
                  **fields) -> ml_collections.ConfigDict:
  """An evaluation every ``config.eval_every_steps`` (a reference: overriding that field
  moves it too), at the last step and in --mode=eval."""
  return ml_collections.ConfigDict(dict(type=type_name, data=data,
                                        every_steps=config.get_ref("eval_every_steps"), **fields))


def final_eval(type_name: str, data: str = "test", **fields) -> ml_collections.ConfigDict:
  """An evaluation once training is done (and in --mode=eval), scalars under ``test/``."""
  return ml_collections.ConfigDict(dict(type=type_name, data=data, every_steps=0, prefix="test",
                                        **fields))


def quick_run(config: ml_collections.ConfigDict, eval_batch_size: int,
              log_every_steps: int = 50) -> None:
  """A bundled dataset's run of seconds: logs every ``log_every_steps``, evaluations and
  checkpoints every 100 steps, no gate (its figures are not the published ones)."""
  config.eval_batch_size = eval_batch_size
  config.log_every_steps = log_every_steps
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  config.gate = ""


def one_class_images(arg: str | None, model: str, **defaults):
  """``(config, arg)`` of a one-class anomaly detector (research/tasks/one_class.py) on an
  image dataset, Ruff et al. (2018)'s protocol: train and val hold the ``normal`` class
  only, the test split every class (normal against the other nine: ``anomaly_report``'s
  ``test/auroc``); the validation loss is logged every ``eval_every_steps``. ARG:
  ``dataset=`` (mnist, fashion_mnist, cifar10, digits), ``normal=`` the class (0), and
  the config's own ``defaults``."""
  arg = parse_arg(arg, dataset="mnist", normal=0, **defaults,
                  choices={"dataset": IMAGE_DATASETS})
  config = base_config()
  select_dataset(config, arg.dataset)
  config.data.train_labels = (arg.normal,)
  if arg.dataset == "digits":  # ~130 training images of a class
    config.batch_size = 64
  config.task.name = "one_class"
  config.model = ml_collections.ConfigDict()
  config.model.name = model
  config.evals.val = periodic_eval(config, "metrics")
  config.evals.test = final_eval("anomaly_report")
  return config, arg


def study_arg(arg: str | None, allowed) -> str:
  """A study config's ARG: one of ``allowed`` (a dict's keys), ``digits`` when absent."""
  arg = arg or "digits"
  if arg not in allowed:
    raise ValueError(f"unknown config argument {arg!r}; allowed: {', '.join(allowed)}")
  return arg


def select_dataset(config: ml_collections.ConfigDict, name: str) -> str:
  """Sets ``config.data.name``; ``digits`` also shrinks the run to seconds: 30 epochs,
  eval batches of 200, logs every 50 steps, evaluations and checkpoints every 100, no
  gate. Returns ``name``."""
  if name not in IMAGE_DATASETS:
    raise ValueError(f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}")
  config.data.name = name
  if name == "digits":  # 1,437 train images: a quick offline run
    config.num_epochs = 30.0
    quick_run(config, eval_batch_size=200)
  return name


GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "neutral",
    "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise")

# The 15 intents of the generated corpus (research/data/synthetic_intents.py:INTENT_NAMES;
# tests/test_text_offline.py checks that they agree), listed here so that loading a config
# imports no TFDS.
SYNTHETIC_INTENTS = (
    "book_flight", "book_train", "weather", "world_time", "set_alarm", "set_timer", "reminder",
    "play_music", "add_to_playlist", "transfer", "balance", "order_food", "book_restaurant",
    "translate", "definition")

# Text datasets: the text feature, the label feature(s) (several: multi-label), the
# number of classes, the splits (train, validation, test) and a length that truncates
# almost no example. CLINC150: the classifiers train on the in-scope intents only; its
# out-of-scope test queries (test_oos, labelled 150) are text_transformer's OOD set.
# ``bundled``: generated here, offline (research/data/synthetic_intents.py), the text
# configs' counterpart of ``digits``: synthetic_intents is shaped like clinc_oos (text,
# intent), synthetic_multi_intents like goemotions (one boolean feature per label).
TEXT_DATASETS = {
    "clinc_oos": dict(feature="text", labels=("intent",), num_classes=150,
                      splits=("train", "validation", "test"), max_length=24),
    "goemotions": dict(feature="comment_text", labels=GOEMOTIONS_LABELS,
                       num_classes=len(GOEMOTIONS_LABELS),
                       splits=("train", "validation", "test"), max_length=40),
    "synthetic_intents": dict(feature="text", labels=("intent",),
                              num_classes=len(SYNTHETIC_INTENTS),
                              splits=("train", "validation", "test"), max_length=24,
                              bundled=True),
    "synthetic_multi_intents": dict(feature="text", labels=SYNTHETIC_INTENTS,
                                    num_classes=len(SYNTHETIC_INTENTS),
                                    splits=("train", "validation", "test"), max_length=40,
                                    bundled=True),
}
# The text configs' offline datasets (``--config=text_transformer:synthetic_intents``).
OFFLINE_TEXT_DATASETS = tuple(name for name, spec in TEXT_DATASETS.items()
                              if spec.get("bundled"))


def text_dataset(config: ml_collections.ConfigDict, name: str) -> dict:
  """Reads the text dataset ``name`` (a key of TEXT_DATASETS) as ``tokens`` and ``length``
  (research/data/text.py). Sets ``config.data``: its name, splits, features, no
  preprocess, and ``data.text`` (feature, labels, a 10,000-word vocabulary of the words
  seen at least twice in training, max_length). A bundled dataset (``synthetic_*``, a
  few hundred words) also gets a 1,000-word vocabulary and, like ``select_dataset``'s
  digits, a run sized for seconds: eval batches of 600, logs every 25 steps, evaluations
  and checkpoints every 100, no gate (the config sets its epochs). Returns the
  TEXT_DATASETS entry; the config sets the task's inputs, ``model.num_classes`` and
  ``model.vocab_size`` (several labels: the multi-label task)."""
  if name not in TEXT_DATASETS:
    raise ValueError(f"unknown text dataset {name!r}; known: {', '.join(TEXT_DATASETS)} "
                     f"(offline: {', '.join(OFFLINE_TEXT_DATASETS)})")
  spec = TEXT_DATASETS[name]
  config.data.name = name
  config.data.train_split, config.data.val_split, config.data.test_split = spec["splits"]
  config.data.features = (spec["feature"], *spec["labels"])
  config.data.preprocess = ""
  config.data.text = ml_collections.ConfigDict()
  config.data.text.feature = spec["feature"]
  config.data.text.labels = spec["labels"]
  config.data.text.vocab_size = 10_000  # including <pad> and <unk>
  config.data.text.min_count = 2  # rarer training words become <unk>
  config.data.text.max_length = spec["max_length"]
  if spec.get("bundled"):  # 3,000-4,000 generated training texts: a quick offline run
    config.data.text.vocab_size = 1_000
    quick_run(config, eval_batch_size=600, log_every_steps=25)
  return spec


# Tabular datasets (research/data/tabular.py): the numeric and categorical columns a row is
# read from (its ``label`` is the class) and the number of classes. ``penguins`` is bundled
# (research/data/penguins.py): the Palmer penguins' species, offline.
TABULAR_DATASETS = {
    "penguins": dict(numeric=("bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                              "body_mass_g", "year"),
                     categorical=("island", "sex"), num_classes=3),
}
# What the classifier configs on flat inputs (logreg, mlp, svm) accept as their dataset.
CLASSIFIER_DATASETS = IMAGE_DATASETS + tuple(TABULAR_DATASETS)


def tabular_dataset(config: ml_collections.ConfigDict, name: str) -> dict:
  """Reads the tabular dataset ``name`` (a key of TABULAR_DATASETS) as one float32
  ``features`` vector per row (research/data/tabular.py), the model's input. Sets
  ``config.data``: its name, features, no preprocess, and ``data.tabular``: median
  imputation of numbers, the most frequent category for a missing one, clipping to the
  1%-99% training quantiles, standardisation, one-hot categories with an unknown one
  encoded as all zeros, all fitted on the training split; ``task.inputs``,
  ``model.num_classes``; and, like ``select_dataset``'s digits, a run of seconds: batches
  of 32, 100 epochs, eval batches of 100, logs every 50 steps, evaluations and checkpoints
  every 100, no gate. Returns the TABULAR_DATASETS entry."""
  if name not in TABULAR_DATASETS:
    raise ValueError(f"unknown tabular dataset {name!r}; known: {', '.join(TABULAR_DATASETS)}")
  spec = TABULAR_DATASETS[name]
  config.data.name = name
  config.data.features = (*spec["numeric"], *spec["categorical"], "label")
  config.data.preprocess = ""
  config.data.tabular = ml_collections.ConfigDict()
  config.data.tabular.numeric = spec["numeric"]
  config.data.tabular.categorical = spec["categorical"]
  config.data.tabular.impute_numeric = "median"  # median | mean | most_frequent
  config.data.tabular.impute_categorical = "most_frequent"  # or constant: "<missing>" a category
  config.data.tabular.clip_quantiles = (0.01, 0.99)  # (): no clipping
  config.data.tabular.standardize = True
  config.data.tabular.one_hot = True  # False: one code per categorical column
  config.data.tabular.unknown_category = "ignore"  # all zeros; error: stop with one line
  config.task.inputs = ("features",)
  config.model.num_classes = spec["num_classes"]
  config.batch_size = 32  # 248 training rows
  config.num_epochs = 100.0
  quick_run(config, eval_batch_size=100)
  return spec


def classifier_dataset(config: ml_collections.ConfigDict, name: str) -> str:
  """``select_dataset`` for an image dataset, ``tabular_dataset`` for a tabular one (a key
  of CLASSIFIER_DATASETS); returns ``name``."""
  if name in TABULAR_DATASETS:
    tabular_dataset(config, name)
    return name
  return select_dataset(config, name)

# Model presets the MLP VAE configs accept as ARG (``--config=vae:iwae_arch``, with a
# dataset ``--config=vae:iwae_arch,digits``; ``preset=iwae_arch`` spelled out): fields
# the config's ``config.model.update``s last.
VAE_PRESETS = {
    # Burda et al. (2016), one stochastic layer: 784-200-200-(2x50) and 50-200-200-784, tanh.
    "iwae_arch": {"hidden": (200, 200), "latent_dim": 50, "activation": "tanh"},
    # Kingma et al. (2014)'s M1: 784-600-600-(2x50) and 50-600-600-784, softplus.
    "kingma_m1": {"hidden": (600, 600), "latent_dim": 50, "activation": "softplus"},
}


# Importance samples per test image of the final NLL. The IWAE paper's protocol is 5,000
# (--config.evals.nll.num_samples=5000, as benchmarks/RESULTS.md's NLL figures); 500 keeps
# the README's first command to minutes on a CPU, a bound at most a few tenths of a nat looser.
NLL_SAMPLES = 500
NLL_SAMPLES_DIGITS = 100


# Importance samples drawn at a time by the NLL evaluations: with 1,000-image evaluation batches,
# 10 keeps each step's decoder output in the CPU's caches (benchmarks/RESULTS.md, IS NLL speed).
NLL_CHUNK = 10


def vae_evals(config: ml_collections.ConfigDict, dataset: str, chunk: int = NLL_CHUNK) -> None:
  """The VAE configs' evaluations: ``val`` metrics and ``images`` every eval_every_steps;
  at the end ``test`` metrics, the test ``nll`` by importance sampling (NLL_SAMPLES per
  image, ``chunk`` at a time; NLL_SAMPLES_DIGITS on digits) and the ``latents`` report
  (per-dimension KL, active units)."""
  config.evals.val = periodic_eval(config, "metrics")
  config.evals.images = periodic_eval(config, "images")
  config.evals.test = final_eval("metrics")
  config.evals.nll = final_eval("likelihood", num_samples=NLL_SAMPLES_DIGITS if dataset == "digits"
                                else NLL_SAMPLES,
                                chunk=chunk)
  config.evals.latents = final_eval("latents")
