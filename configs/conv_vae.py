"""Convolutional VAE on grey-level Fashion-MNIST with a discretized logistic decoder;
reports nats per image and bits per dimension.

    python launch.py --config=conv_vae                                   # Fashion-MNIST
    python launch.py --config=conv_vae --config.task.likelihood=categorical
    python launch.py --config=conv_vae:digits
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 20.0
  config.data.name = "fashion_mnist"
  return common.vae(config, arg, model="conv_vae", likelihood="logistic", nll_chunk=5,
                    latent_dim=32, channels=(32, 64), hidden=256)
