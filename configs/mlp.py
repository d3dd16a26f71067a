"""python launch.py --config=mlp         # MNIST test accuracy 98.66% in 201 s (benchmarks/RESULTS.md)
python launch.py --config=mlp:digits  # bundled 8x8 digits, offline: seconds
python launch.py --config=mlp:penguins  # bundled tabular, offline: test accuracy 97.10% in 35 s

MLP classifier 1024-1024, ReLU, dropout 0.2, 20 epochs; gate >= 98.3%. MNIST needs a
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
  config.gate = "test/accuracy>=0.983"
  config.num_epochs = 20.0

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "mlp"  # research/models/mlp.py
  config.model.num_classes = 10
  config.model.hidden = (1024, 1024)
  config.model.activation = "relu"
  config.model.dropout = 0.2

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.classifier_dataset(config, arg.dataset)
  return config
