"""Defaults every experiment shares; a config file states only what differs.

Each config file defines ``get_config(arg=None)``; ``arg`` is the text after a colon
in ``--config=NAME:ARG`` (e.g. ``digits`` for the bundled offline dataset).
"""
import ml_collections
from ml_collections import config_dict

# Image shapes of the datasets the configs know about.
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "digits": (8, 8, 1)}


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
  return config


def select_dataset(config: ml_collections.ConfigDict, arg: str | None) -> str:
  """Applies ``arg`` as the dataset name; ``digits`` also shrinks the run to seconds."""
  name = arg or config.data.name
  if name not in IMAGE_SHAPES:
    raise ValueError(f"unknown config argument {arg!r}; known: {', '.join(IMAGE_SHAPES)}")
  config.data.name = name
  if name == "digits":  # 1,437 train images: a quick offline run
    config.num_epochs = 30.0
    config.eval_batch_size = 200
    config.log_every_steps = 50
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.gate = ""
  return name
