"""Multinomial logistic regression on MNIST: >= 92% test accuracy.

A linear layer on the flattened pixels, softmax cross-entropy and an L2 penalty
(``task.l2``) on the weights.

    python launch.py --config=logreg         # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=logreg:digits  # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.92"
  common.classification(config, "linear", loss="softmax", l2=1e-4)
  config.optimizer.learning_rate = 3e-3
  common.select_dataset(config, arg)
  return config
