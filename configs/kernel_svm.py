"""SVM with an RBF kernel, approximated by random Fourier features, on MNIST.

The ``svm`` objective (Crammer-Singer hinge, L2 on the weights; ``task.loss``
selects LinearSVC's squared hinge instead) on ``model.num_features`` random Fourier
features of the pixels (``research/models/random_features.py``):
k(x, x') = exp(-gamma ||x - x'||^2) with ``model.gamma``.

    python launch.py --config=kernel_svm            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=kernel_svm:digits     # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.97"
  config.num_epochs = 10.0
  common.classification(config, "random_features", loss="hinge", l2=1e-5,
                        num_features=4096, gamma=0.02)
  config.optimizer.learning_rate = 3e-3
  common.select_dataset(config, arg)
  if config.data.name == "digits":  # 64 pixels in [0, 1]: sklearn's gamma="scale" is ~0.09
    config.model.gamma = 0.1
    config.model.num_features = 1024
  return config
