"""python launch.py --config=beta_vae --config.task.beta=8  # MNIST: not yet measured
python launch.py --config=beta_vae:digits                # bundled 8x8 digits, offline: seconds

beta-VAE (Higgins et al., 2017): the KL term weighted by beta (4 by default), reached by
a linear warm-up over 5,000 steps, on dynamically binarized MNIST; MLP 784-512-512-10,
30 epochs. The final evaluation reports the KL of each latent dimension
(WORKDIR/reports/test_latents.csv) and the number of active units. MNIST needs a TFDS
data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG as ``vae``'s: ``dataset=`` mnist
(default), fashion_mnist, cifar10 or digits, ``preset=iwae_arch`` (or just the names).
"""
import ml_collections

from configs import common, vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``vae``'s config (its ARG too) with beta = 4, a KL warm-up and 10 latents."""
  config = vae.get_config(arg)
  config.num_epochs = 30.0
  config.gate = ""
  config.task.beta = 4.0  # the KL term's weight
  config.task.kl_warmup_steps = 5000  # beta rises linearly from 0 over these steps
  config.model.latent_dim = 10
  preset = common.parse_arg(arg, dataset="mnist", preset="", choices=vae.ARG_CHOICES).preset
  if preset:  # a preset's architecture wins over the beta-VAE's latent size
    config.model.update(common.VAE_PRESETS[preset])
  return config
