"""IWAE (Burda et al., 2016): the importance-weighted bound with k samples, on the
paper's one-stochastic-layer architecture, dynamically binarized MNIST.

    python launch.py --config=iwae                          # k=5
    python launch.py --config=iwae --config.task.num_samples=50
    python launch.py --config=iwae:digits                   # bundled, offline
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.num_epochs = 50.0
  arg = ",".join(filter(None, ["iwae_arch", arg]))
  return common.vae(config, arg, model="vae", likelihood="bernoulli", objective="iwae",
                    num_samples=5)
