"""python launch.py --config=kernel_svm         # MNIST test accuracy 97.30% in 125 s (benchmarks/RESULTS.md)
python launch.py --config=kernel_svm:digits  # bundled 8x8 digits, offline: seconds

SVM with an RBF kernel, approximated by random Fourier features: the ``svm`` objective
(Crammer-Singer hinge, L2 on the weights; ``task.loss=squared_hinge`` selects LinearSVC's
instead) on ``model.num_features`` random Fourier features of the pixels, fixed at init
(research/models/random_features.py): k(x, x') = exp(-gamma ||x - x'||^2) with
``model.gamma``; gate >= 97%. MNIST needs a TFDS data dir with mnist prepared,
TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default), fashion_mnist, cifar10 or digits
(or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.97"
  config.num_epochs = 10.0

  config.task.name = "classification"
  config.task.loss = "hinge"  # Crammer-Singer; squared_hinge: LinearSVC's one-vs-rest
  config.task.l2 = 1e-5  # 0.5 * l2 * ||W||^2 on weight matrices

  config.model.name = "random_features"  # research/models/random_features.py
  config.model.num_classes = 10
  config.model.num_features = 4096
  config.model.gamma = 0.02

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  config.optimizer.learning_rate = 3e-3
  common.select_dataset(config, arg.dataset)
  if arg.dataset == "digits":  # 64 pixels in [0, 1]: sklearn's gamma="scale" is ~0.09
    config.model.gamma = 0.1
    config.model.num_features = 1024
  return config
