"""MLP VAE on dynamically binarized MNIST: test -ELBO <= 100 nats.

Bernoulli decoder, Gaussian posterior, standard normal prior. Training images are
binarized afresh every step; validation and test images once, with a fixed key. The
final evaluation adds the test NLL by importance sampling (evals.nll.num_samples=5000).

    python launch.py --config=vae            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=vae:iwae_arch  # the IWAE paper's architecture (200-200 tanh, 50 latents)
    python launch.py --config=vae:digits     # bundled, offline, seconds
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 50.0
  config.gate = "test/neg_elbo<=100"
  return common.vae(config, arg, model="vae", likelihood="bernoulli",
                    latent_dim=32, hidden=(512, 512), activation="relu")
