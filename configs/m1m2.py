"""python launch.py --config=vae:kingma_m1 --workdir=/tmp/m1   # M1 first: a VAE on MNIST
python launch.py --config=m1m2 --workdir=/tmp/m1m2 \\
    --config.init_from.workdir=/tmp/m1   # then M2 on its codes, 100 labels: not yet measured
python launch.py --config=vae:kingma_m1,digits --workdir=/tmp/m1_digits  # offline
python launch.py --config=m1m2:digits --workdir=/tmp/m1m2_digits \\
    --config.init_from.workdir=/tmp/m1_digits

Kingma et al. (2014)'s M1+M2 (research/tasks/m1m2.py, research/models/m1m2.py): M2 as in
configs/m2.py (its labelled subsets, batches, alpha, sizes and Adam 3e-4), trained on the
latent codes z1 ~ q(z1 | x) of M1, a trained run of ``vae:kingma_m1`` (600-600 softplus, 50
latents: common.VAE_PRESETS) given by ``init_from.workdir`` (required), with a Gaussian
p(z1 | y, z2). M1's ``encoder`` and ``posterior`` are copied before step 0 and frozen
(``optimizer.frozen``). ``test/accuracy`` is q(y | z1)'s on the posterior means (Kingma et
al.: 3.33% error with 100 labels). ARG: as ``m2``.
"""
import ml_collections

from configs import common, m2

M1 = common.VAE_PRESETS["kingma_m1"]
M1_MODULES = ("encoder", "posterior")  # research/models/m1m2.py's M1, a vae run's names


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = m2.get_config(arg)
  config.task.name = "m1m2"  # research/tasks/m1m2.py
  config.task.likelihood = "gaussian"  # p(z1 | y, z2)
  model = config.model
  config.model = ml_collections.ConfigDict(dict(
      name="m1m2", num_classes=model.num_classes, m1_latent_dim=M1["latent_dim"],
      m1_hidden=M1["hidden"], m1_activation=M1["activation"], latent_dim=model.latent_dim,
      hidden=model.hidden, classifier_hidden=model.classifier_hidden,
      activation=model.activation, image_shape=model.get_ref("image_shape")))
  config.init_from = ml_collections.ConfigDict()
  config.init_from.workdir = ""  # a run of vae:kingma_m1 on the same data (M1)
  config.init_from.modules = M1_MODULES
  config.optimizer.frozen = M1_MODULES
  for name in ("images", "latents"):  # of x's VAE, which M1+M2 is not
    del config.evals[name]
  return config
