"""python launch.py --config=cnn_strong         # MNIST test accuracy 99.54% in 1,675 s (benchmarks/RESULTS.md)
python launch.py --config=cnn_strong:digits  # bundled 8x8 digits, offline: seconds

A stronger CNN, aiming at >= 99.5% MNIST test accuracy (its gate): batch normalization
(running statistics carried as model state in the TrainState), max pooling, dropout,
and random shifts of up to 2 pixels as training augmentation, 15 epochs. MNIST needs a
TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default),
fashion_mnist, cifar10 or digits (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.995"
  config.num_epochs = 15.0
  config.data.augment = "random_shift(2)"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 200

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "cnn"  # research/models/cnn.py
  config.model.num_classes = 10
  config.model.conv_impl = common.CONV_IMPL
  config.model.conv_features = (32, 64)
  config.model.dense_features = (256,)
  config.model.pool = "max"
  config.model.dropout = 0.3
  config.model.batch_norm = True

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.select_dataset(config, arg.dataset)
  if arg.dataset == "digits":  # 8x8 images: shift by one pixel at most
    config.data.augment = "random_shift(1)"
  return config
