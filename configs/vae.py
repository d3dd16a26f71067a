"""MLP VAE on dynamically binarized MNIST: test -ELBO <= 100 nats.

Bernoulli decoder, Gaussian posterior, standard normal prior. Training images are
binarized afresh every step; validation and test images once, with a fixed key.

    python launch.py --config=vae            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=vae:digits     # bundled, offline, seconds
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 50.0
  config.gate = "test/neg_elbo<=100"
  config.data.preprocess = "scale(0, 1)|binarize"
  config.task.name = "vae"
  config.task.beta = 1.0  # weight of the KL term; 1 is the ELBO
  config.model.name = "vae"
  config.model.latent_dim = 32
  config.model.hidden = (512, 512)
  config.model.activation = "relu"
  name = common.select_dataset(config, arg)
  config.model.image_shape = common.IMAGE_SHAPES[name]
  return config
