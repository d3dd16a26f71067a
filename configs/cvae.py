"""Class-conditional VAE on dynamically binarized MNIST: encoder and decoder see the
one-hot label. Sample grids have one class per row; --mode=sample draws
``task.sample_class`` (or one class per row when -1).

    python launch.py --config=cvae
    python launch.py --config=cvae --mode=sample --config.task.sample_class=3
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 30.0
  return common.vae(config, arg, model="vae", likelihood="bernoulli", num_classes=10,
                    latent_dim=16, hidden=(512, 512), activation="relu")
