"""python launch.py --config=cnn_strong         # MNIST test accuracy 99.54% in 1,675 s (benchmarks/RESULTS.md)
python launch.py --config=cnn_strong:digits  # bundled 8x8 digits, offline: seconds

A stronger CNN, aiming at >= 99.5% MNIST test accuracy (its gate): batch normalization
(running statistics carried as model state in the TrainState), max pooling, dropout,
and random shifts of up to 2 pixels as training augmentation, 15 epochs. MNIST needs a
TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default),
fashion_mnist, cifar10 or digits (or just the name).
"""
import ml_collections

from configs import cnn, common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``cnn``'s config (its ARG too) with batch norm, max pooling, dropout and shifts."""
  dataset = common.parse_arg(arg, dataset="mnist",
                             choices={"dataset": common.IMAGE_DATASETS}).dataset
  config = cnn.get_config(arg)
  config.gate = "test/accuracy>=0.995"
  config.num_epochs = 15.0
  config.data.augment = "random_shift(2)"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 200
  config.model.pool = "max"
  config.model.dropout = 0.3
  config.model.batch_norm = True
  common.select_dataset(config, dataset)  # again: its digits settings win over the above
  if dataset == "digits":  # 8x8 images: shift by one pixel at most
    config.data.augment = "random_shift(1)"
  return config
