"""Linear SVM on MNIST: >= 92% test accuracy.

One-vs-rest squared hinge loss with an L2 penalty on the weights: the objective of
scikit-learn's LinearSVC. ``--config.task.loss=hinge`` trains the Crammer-Singer
multiclass hinge instead.

    python launch.py --config=svm            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=svm:digits     # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.92"
  common.classification(config, "linear", loss="squared_hinge", l2=1e-4)
  config.optimizer.learning_rate = 1e-3
  common.select_dataset(config, arg)
  return config
