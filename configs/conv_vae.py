"""python launch.py --config=conv_vae                        # Fashion-MNIST, 20 epochs: not yet measured
python launch.py --config=conv_vae --config.num_epochs=2  # test -ELBO 3.81 bits/dim in 1,134 s
python launch.py --config=conv_vae:digits                 # bundled 8x8 digits, offline: seconds

(The 2-epoch run, with its NLL: benchmarks/RESULTS.md.) With
``--config.task.likelihood=categorical`` (256-way pixels): not yet measured.

Convolutional VAE (conv 32-64, dense 256, 32 latents) on grey-level Fashion-MNIST with a
discretized logistic decoder on pixels scaled to [0, 1]; reports nats per image and bits
per dimension. Fashion-MNIST needs a TFDS data dir with fashion_mnist prepared,
TFDS_DATA_DIR=DIR. ARG: ``dataset=`` fashion_mnist (default), mnist, cifar10 or digits
(or just the name).
"""
import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="fashion_mnist",
                         choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.num_epochs = 20.0
  config.data.name = "fashion_mnist"
  config.data.preprocess = "scale(0, 1)"  # grey levels

  config.task.name = "vae"  # research/tasks/vae.py
  config.task.likelihood = "logistic"  # discretized logistic; or categorical (256-way)
  config.task.objective = "elbo"
  config.task.num_samples = 1
  config.task.beta = 1.0  # the KL term's weight
  config.task.kl_warmup_steps = 0
  config.task.sample_class = -1  # class-conditional models' --mode=sample: -1 one per row

  config.model.name = "conv_vae"  # research/models/conv_vae.py
  config.model.num_classes = 0  # > 0: class-conditional
  config.model.latent_dim = 32
  config.model.channels = (32, 64)
  config.model.hidden = 256
  config.model.image_shape = config_dict.placeholder(tuple)  # None: the data's

  common.vae_evals(config, arg.dataset, chunk=5)

  common.select_dataset(config, arg.dataset)
  return config
