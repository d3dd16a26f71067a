"""python launch.py --config=autoencoder:normal=0 --workdir=/tmp/ae0   # MNIST, class 0 normal
python launch.py --config=autoencoder:digits,normal=3 --workdir=/tmp/ae_digits  # offline

One-class anomaly detection by reconstruction error (research/models/autoencoder.py):
Ruff et al. (2018)'s convolutional autoencoder (bias-free LeNet-type encoder, 32 latents)
trained on the ``normal`` class alone; its per-image squared error scores the whole
test split (normal against the other classes: ``test/auroc``). It is also the
pretraining of ``deep_svdd``. Figures: the one-class study (configs/studies/one_class.py,
benchmarks/RESULTS.md). ARG: ``dataset=`` mnist (default), fashion_mnist, cifar10 or
digits, ``normal=`` the class (0).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config, arg = common.one_class_images(arg, "autoencoder")
  config.model.features = (8, 4)  # 3 blocks ((32, 64, 128)) for 32x32 colour images
  config.model.latent_dim = 32
  config.model.kernel_size = 5
  # XLA's convolution: with 1-8 channels and 5x5 kernels im2col's patches cost more than
  # they save (benchmarks/RESULTS.md, one-class section).
  config.model.conv_impl = "xla"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 5e-7  # Ruff et al.'s lambda
  config.num_epochs = 10.0  # Ruff et al. train 250; the study trains 60 of these
  if arg.dataset == "digits":  # ~130 training images of a class
    config.total_steps = 300
  return config
