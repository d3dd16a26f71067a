"""beta-VAE (Higgins et al., 2017): the KL term weighted by beta, reached by a linear
warm-up, on dynamically binarized MNIST. The final evaluation reports the KL of each
latent dimension (WORKDIR/reports/test_latents.csv) and the number of active units.

    python launch.py --config=beta_vae --config.task.beta=8
    python launch.py --config=beta_vae:digits
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 30.0
  return common.vae(config, arg, model="vae", likelihood="bernoulli", beta=4.0,
                    kl_warmup_steps=5000, latent_dim=10, hidden=(512, 512), activation="relu")
