"""CNN classifier (the yardstick architecture) on MNIST: >= 99.0% test accuracy.

    python launch.py --config=cnn            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=cnn:digits     # bundled, offline, seconds
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.99"
  common.classification(config, "cnn", conv_impl=common.CONV_IMPL,
                        conv_features=(32, 64), dense_features=(256,),
                        pool="avg", dropout=0.0)
  common.select_dataset(config, arg)
  return config
