"""python launch.py --config=resnet          # Fashion-MNIST test accuracy 93.98% in 2,709 s
python launch.py --config=resnet:cifar10  # CIFAR-10 (100 epochs, gate 91%): not yet measured
python launch.py --config=resnet:digits   # bundled 8x8 digits, offline: seconds

(benchmarks/RESULTS.md has the run, alone on the 2-core CPU.)

CIFAR-style ResNet-20 (batch norm, SGD + Nesterov, weight decay, random shifts and
flips), 20 epochs on Fashion-MNIST, aiming at >= 93.5% test accuracy (its gate).
Fashion-MNIST needs a TFDS data dir with fashion_mnist prepared (CIFAR-10: cifar10),
TFDS_DATA_DIR=DIR. ARG: ``dataset=`` fashion_mnist (default), mnist, cifar10 or
digits (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="fashion_mnist",
                         choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.data.name = "fashion_mnist"
  config.gate = "test/accuracy>=0.935"
  config.num_epochs = 20.0
  config.data.augment = "random_shift(2)|random_flip"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.warmup_steps = 200

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "resnet"  # research/models/resnet.py
  config.model.num_classes = 10
  config.model.stage_sizes = (3, 3, 3)  # 3 blocks per stage: ResNet-20
  config.model.width = 16
  # XLA's own convolutions: on the 2-core CPU im2col ran ResNet-20 at 101 examples/s
  # against XLA's 157 (microbatches of 16 with im2col: 150), see benchmarks/RESULTS.md;
  # with RESNET_XLA_CPU_FLAGS, XLA's runs 1.5x faster again.
  config.model.conv_impl = "xla"
  config.xla_flags = common.RESNET_XLA_CPU_FLAGS

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.select_dataset(config, arg.dataset)
  if arg.dataset == "cifar10":
    config.gate = "test/accuracy>=0.91"
    config.num_epochs = 100.0
    config.data.augment = "random_shift(4)|random_flip"
  elif arg.dataset == "digits":  # 8x8: shift by one pixel at most, no mirror images of digits
    config.data.augment = "random_shift(1)"
  elif arg.dataset == "mnist":
    config.data.augment = "random_shift(2)"
  return config
