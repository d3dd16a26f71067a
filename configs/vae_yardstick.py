"""python benchmarks/throughput.py --config=vae_yardstick  # examples/s (benchmarks/RESULTS.md)

Speed comparisons only: not a quality target (and no gate). The yardstick VAE of the
benchmarks: MLP 784-500-(2x20) / 20-500-784, Bernoulli decoder, Adam 1e-3, batch 128, on
dynamically binarized MNIST: the ``vae`` config (configs/vae.py: its task, evaluations
and ARG) with the PyTorch yardstick's sizes. MNIST needs a TFDS data dir with mnist
prepared, TFDS_DATA_DIR=DIR.
"""
import ml_collections

from configs import vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = vae.get_config(arg)
  config.model.latent_dim = 20
  config.model.hidden = (500,)
  config.gate = ""
  return config
