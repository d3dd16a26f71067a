"""MLP classifier on MNIST: >= 98.3% test accuracy.

    python launch.py --config=mlp            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=mlp:digits     # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.983"
  config.num_epochs = 20.0
  common.classification(config, "mlp", hidden=(1024, 1024), activation="relu", dropout=0.2)
  common.select_dataset(config, arg)
  return config
