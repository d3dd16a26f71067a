"""python launch.py --config=vae         # MNIST test -ELBO 93.16 nats in 402 s (benchmarks/RESULTS.md)
python launch.py --config=vae:digits  # bundled 8x8 digits, offline: ~20 s
python launch.py --config=vae:iwae_arch --config.num_epochs=1000 --config.evals.nll.num_samples=5000
    # test NLL 87.36 nats (k=5,000, the IWAE paper's protocol) in 1 h 45 min

MLP VAE 784-512-512-32 on dynamically binarized MNIST, 50 epochs; gate test -ELBO <= 100
nats. Bernoulli decoder, Gaussian posterior, standard normal prior. Training images are
binarized afresh every step; validation and test images once, with a fixed key. The final
evaluation adds the test NLL by importance sampling on the full test set
(``evals.nll.num_samples``: 500, common.NLL_SAMPLES; 100 on digits; the IWAE paper's 5,000
with ``--config.evals.nll.num_samples=5000``). MNIST needs a TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR.

ARG: ``dataset=`` mnist (default), fashion_mnist, cifar10 or digits, and ``preset=``
iwae_arch (the IWAE paper's architecture, 784-200-200-50 tanh: common.VAE_PRESETS) or
kingma_m1 (Kingma et al. 2014's M1, 784-600-600-50 softplus, for configs/m1m2.py), each
also as just the name: ``vae:iwae_arch,digits``.
"""
import ml_collections
from ml_collections import config_dict

from configs import common


ARG_CHOICES = {"dataset": common.IMAGE_DATASETS, "preset": tuple(common.VAE_PRESETS)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", preset="", choices=ARG_CHOICES)
  config = common.base_config()
  config.num_epochs = 50.0
  config.gate = "test/neg_elbo<=100"
  config.data.preprocess = "scale(0, 1)|binarize"  # binarized: Bernoulli pixels

  config.task.name = "vae"  # research/tasks/vae.py
  config.task.likelihood = "bernoulli"
  config.task.objective = "elbo"  # or iwae, with task.num_samples k
  config.task.num_samples = 1
  config.task.beta = 1.0  # the KL term's weight
  config.task.kl_warmup_steps = 0
  config.task.sample_class = -1  # class-conditional models' --mode=sample: -1 one per row

  config.model.name = "vae"  # research/models/vae.py
  config.model.num_classes = 0  # > 0: class-conditional
  config.model.latent_dim = 32
  config.model.hidden = (512, 512)
  config.model.activation = "relu"
  if arg.preset:
    config.model.update(common.VAE_PRESETS[arg.preset])
  config.model.image_shape = config_dict.placeholder(tuple)  # None: the data's

  common.vae_evals(config, arg.dataset)

  common.select_dataset(config, arg.dataset)
  return config
