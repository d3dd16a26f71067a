"""python launch.py --config=cnn         # MNIST test accuracy 99.27% in 615 s (benchmarks/RESULTS.md)
python launch.py --config=cnn:digits  # bundled 8x8 digits, offline: seconds

CNN classifier, the yardstick architecture (conv 32-64, average pooling, dense 256:
824,458 parameters on MNIST), Adam + cosine, 10 epochs; gate >= 99.0%. MNIST needs a
TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default),
fashion_mnist, cifar10 or digits (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.99"

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "cnn"  # research/models/cnn.py
  config.model.num_classes = 10
  config.model.conv_impl = common.CONV_IMPL
  config.model.conv_features = (32, 64)
  config.model.dense_features = (256,)
  config.model.pool = "avg"
  config.model.dropout = 0.0

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.select_dataset(config, arg.dataset)
  return config
