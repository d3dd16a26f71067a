"""A stronger CNN on MNIST, aiming at >= 99.5% test accuracy: batch normalization
(running statistics carried as model state in the TrainState), max pooling,
dropout, and random shifts of up to 2 pixels as training augmentation.

    python launch.py --config=cnn_strong         # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=cnn_strong:digits  # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.995"
  config.num_epochs = 15.0
  config.data.augment = "random_shift(2)"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 200
  common.classification(config, "cnn", conv_impl=common.CONV_IMPL,
                        conv_features=(32, 64), dense_features=(256,),
                        pool="max", dropout=0.3, batch_norm=True)
  common.select_dataset(config, arg)
  if config.data.name == "digits":  # 8x8 images: shift by one pixel at most
    config.data.augment = "random_shift(1)"
  return config
