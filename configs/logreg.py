"""python launch.py --config=logreg         # MNIST test accuracy 92.67% in 24 s (benchmarks/RESULTS.md)
python launch.py --config=logreg:digits  # bundled 8x8 digits, offline: seconds
python launch.py --config=logreg:penguins  # bundled tabular, offline: test accuracy 98.55% in 39 s

Multinomial logistic regression: a linear layer on the flattened pixels, softmax
cross-entropy and an L2 penalty (``task.l2``) on the weights; gate >= 92%. MNIST needs a
TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default),
fashion_mnist, cifar10, digits or penguins (or just the name); penguins: the rows'
columns imputed, clipped, one-hot encoded and standardised as fitted on the training split
(configs/common.py ``tabular_dataset``, research/data/tabular.py).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.CLASSIFIER_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.92"

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 1e-4  # 0.5 * l2 * ||W||^2 on weight matrices

  config.model.name = "linear"  # research/models/linear.py
  config.model.num_classes = 10

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  config.optimizer.learning_rate = 3e-3
  common.classifier_dataset(config, arg.dataset)
  return config
