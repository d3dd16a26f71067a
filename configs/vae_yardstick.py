"""The yardstick VAE of benchmarks (../shared/bench): MLP 784-500-(2x20) / 20-500-784,
Bernoulli decoder, Adam 1e-3, batch 128, on dynamically binarized MNIST.

The same model as ``vae`` with the yardstick's sizes; for speed comparisons:

    TFDS_DATA_DIR=../shared/tfds python benchmarks/throughput.py --config=vae_yardstick
"""
import ml_collections

from configs import vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = vae.get_config(arg)
  config.model.latent_dim = 20
  config.model.hidden = (500,)
  config.gate = ""
  return config
