"""Defaults every experiment shares; a config file states only what differs.

Each config file defines ``get_config(arg=None)``; ``arg`` is the text after a colon
in ``--config=NAME:ARG`` (e.g. ``digits`` for the bundled offline dataset).
"""
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
  config.data.download = False
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
  # evaluation; the task's helpers below add the usual ones.
  config.evals = ml_collections.ConfigDict()

  # vmap-parallel replicas of the run (research/train/replicas.py): one jitted step trains
  # a replica per seed and/or learning rate; empty: a single run.
  config.replicas = ml_collections.ConfigDict()
  config.replicas.seeds = ()
  config.replicas.learning_rates = ()
  return config


def classification(config: ml_collections.ConfigDict, model: str, loss: str = "softmax",
                   l2: float = 0.0, **model_fields) -> ml_collections.ConfigDict:
  """Sets up the classification task with ``research/models/<model>.py``."""
  config.task.name = "classification"
  config.task.loss = loss  # softmax, squared_hinge (LinearSVC's) or hinge (Crammer-Singer)
  config.task.l2 = l2  # 0.5 * l2 * ||W||^2 on weight matrices
  config.model.name = model
  config.model.num_classes = 10
  config.model.update(model_fields)
  classifier_evals(config)
  return config


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


def classifier_evals(config: ml_collections.ConfigDict, report: str = "classification_report"):
  """Validation metrics during training; test metrics and the split report at the end."""
  config.evals.val = periodic_eval(config, "metrics")
  config.evals.test = final_eval("metrics")
  config.evals.report = final_eval(report)


def select_dataset(config: ml_collections.ConfigDict, arg: str | None) -> str:
  """Applies ``arg`` as the dataset name; ``digits`` also shrinks the run to seconds."""
  name = arg or config.data.name
  if name not in IMAGE_DATASETS:
    raise ValueError(f"unknown config argument {arg!r}; known: {', '.join(IMAGE_DATASETS)}")
  config.data.name = name
  if name == "digits":  # 1,437 train images: a quick offline run
    config.num_epochs = 30.0
    config.eval_batch_size = 200
    config.log_every_steps = 50
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.gate = ""
  return name


GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "neutral",
    "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise")

# Text datasets: the text feature, the label feature(s) (several: multi-label), the
# number of classes, the splits (train, validation, test) and a length that truncates
# almost no example. CLINC150: the in-scope intents only (its *_oos splits are unused).
TEXT_DATASETS = {
    "clinc_oos": dict(feature="text", labels=("intent",), num_classes=150,
                      splits=("train", "validation", "test"), max_length=24),
    "goemotions": dict(feature="comment_text", labels=GOEMOTIONS_LABELS,
                       num_classes=len(GOEMOTIONS_LABELS),
                       splits=("train", "validation", "test"), max_length=40),
}


def text_dataset(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Reads the text dataset ``name`` (a key of TEXT_DATASETS) as ``tokens`` and ``length``
  (see research/data/text.py) for a model with ``vocab_size`` and ``num_classes``;
  several label features make it the multi-label task."""
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
  config.task.inputs = ("tokens", "length")
  if len(spec["labels"]) > 1:
    config.task.name = "multilabel"
    config.evals.report = final_eval("multilabel_report")
  config.model.num_classes = spec["num_classes"]
  config.model.vocab_size = config.data.text.get_ref("vocab_size")
  config.gate = ""
  return config


# Model presets a VAE config accepts as ARG (``--config=vae:iwae_arch``, or with a
# dataset: ``--config=vae:iwae_arch,digits``).
VAE_PRESETS = {
    # Burda et al. (2016), one stochastic layer: 784-200-200-(2x50) and 50-200-200-784, tanh.
    "iwae_arch": {"hidden": (200, 200), "latent_dim": 50, "activation": "tanh"},
}


def vae(config: ml_collections.ConfigDict, arg: str | None, model: str, likelihood: str,
        objective: str = "elbo", num_samples: int = 1, beta: float = 1.0,
        kl_warmup_steps: int = 0, nll_chunk: int = 50, num_classes: int = 0,
        **model_fields) -> ml_collections.ConfigDict:
  """Sets up the VAE task (research/tasks/vae.py) with ``research/models/<model>.py``.

  ``arg`` is a comma-separated list of ``VAE_PRESETS`` names and at most one dataset.
  Binarized images get a Bernoulli decoder; grey levels a discrete one (logistic or
  categorical) on pixels scaled to [0, 1].
  """
  tokens = [t for t in (arg or "").split(",") if t]
  presets = [t for t in tokens if t in VAE_PRESETS]
  datasets = [t for t in tokens if t not in VAE_PRESETS]
  if len(datasets) > 1:
    raise ValueError(f"config argument {arg!r} names more than one dataset")
  config.task.name = "vae"
  config.task.likelihood = likelihood
  config.task.objective = objective
  config.task.num_samples = num_samples
  config.task.beta = beta
  config.task.kl_warmup_steps = kl_warmup_steps
  config.task.sample_class = -1
  config.data.preprocess = "scale(0, 1)|binarize" if likelihood == "bernoulli" else "scale(0, 1)"
  config.model.name = model
  config.model.num_classes = num_classes
  config.model.update(model_fields)
  for preset in presets:
    config.model.update(VAE_PRESETS[preset])
  config.model.image_shape = config_dict.placeholder(tuple)  # None: the data's
  name = select_dataset(config, datasets[0] if datasets else None)
  config.evals.val = periodic_eval(config, "metrics")
  config.evals.images = periodic_eval(config, "images")
  config.evals.test = final_eval("metrics")
  # The test NLL by importance sampling: k samples per image, nll_chunk at a time.
  config.evals.nll = final_eval("likelihood", num_samples=100 if name == "digits" else 5000,
                                chunk=nll_chunk)
  config.evals.latents = final_eval("latents")
  return config
