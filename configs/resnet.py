"""CIFAR-style ResNet-20 (batch norm, random shifts and flips), run here on
Fashion-MNIST, aiming at >= 93.5% test accuracy.

    python launch.py --config=resnet                # Fashion-MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=resnet:cifar10        # CIFAR-10, once TFDS has it prepared
    python launch.py --config=resnet:digits         # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
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
  # XLA's own convolutions: on the 2-core CPU im2col ran ResNet-20 at 101 examples/s
  # against XLA's 157 (microbatches of 16 with im2col: 150), see benchmarks/RESULTS.md;
  # with RESNET_XLA_CPU_FLAGS, XLA's runs 1.5x faster again.
  common.classification(config, "resnet", stage_sizes=(3, 3, 3), width=16, conv_impl="xla")
  config.xla_flags = common.RESNET_XLA_CPU_FLAGS
  name = common.select_dataset(config, arg)
  if name == "cifar10":
    config.gate = "test/accuracy>=0.91"
    config.num_epochs = 100.0
    config.data.augment = "random_shift(4)|random_flip"
  elif name == "digits":  # 8x8 images: shift by one pixel at most, no mirror images of digits
    config.data.augment = "random_shift(1)"
  elif name == "mnist":
    config.data.augment = "random_shift(2)"
  return config
