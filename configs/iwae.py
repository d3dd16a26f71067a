"""python launch.py --config=iwae         # k=5, 50 epochs: test NLL 1.8 nats below vae:iwae_arch's
python launch.py --config=iwae:digits  # bundled 8x8 digits, offline: seconds
python launch.py --config=iwae --config.task.num_samples=50 --config.num_epochs=5  # 10.9 below

At equal epochs against ``vae:iwae_arch`` (benchmarks/RESULTS.md; NLL with k=5,000 on
test[:1000]): k=5, 50 epochs, 92.47 vs 94.22 nats (2,832 s); k=50, 5 epochs, 117.04 vs
127.96.

IWAE (Burda et al., 2016): the importance-weighted bound with k samples (5), on the
paper's one-stochastic-layer architecture (784-200-200-50 tanh, ``vae:iwae_arch``'s),
dynamically binarized MNIST, 50 epochs. MNIST needs a TFDS data dir with mnist prepared,
TFDS_DATA_DIR=DIR. ARG as ``vae``'s: ``dataset=`` mnist (default), fashion_mnist, cifar10
or digits, ``preset=iwae_arch`` (already its architecture; or just the names).
"""
import ml_collections

from configs import common, vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``vae``'s config (its ARG too) with the importance-weighted bound on the paper's
  architecture."""
  config = vae.get_config(arg)
  config.gate = ""
  config.task.objective = "iwae"  # the importance-weighted bound IWAE_k
  config.task.num_samples = 5  # k
  config.model.update(common.VAE_PRESETS["iwae_arch"])  # 784-200-200-(2x50), tanh
  return config
