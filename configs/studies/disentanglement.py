"""python launch.py --config=studies/disentanglement --workdir=/tmp/disentanglement  # not measured
python launch.py --config=studies/disentanglement:full --workdir=/tmp/disentanglement_full

The disentanglement study (research/studies/disentanglement.py): beta-VAE, beta-TCVAE,
FactorVAE and DIP-VAE-I (configs/dsprites_vae.py: Burgess et al.'s convolutional VAE, Adam at
1e-4, batches of 64) over three values of each model's main hyperparameter, within
disentanglement_lib's sweeps (beta 1-16, TC beta 1-10, gamma 10-100, lambda_od 1-50), five
seeds each as vmapped replicas, every setting the same budget of ``total_steps``; the
disentanglement scores' table and box plots, and the latent traversals of each model's best
and median run by ``rank_by``.

ARG: ``small`` (default: dsprites_like/small, 5,000 steps a setting, scored on its training
images) or ``full`` (dsprites_like, 737,280 images; 300,000 steps, scored on its test split).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"small": "small", "full": "dsprites_like"}
STEPS = {"small": 5_000, "full": 300_000}
MODELS = {
    "beta_vae": dict(field="beta", values=(1.0, 4.0, 16.0)),
    "beta_tcvae": dict(field="beta", values=(2.0, 6.0, 10.0)),
    "factor_vae": dict(field="gamma", values=(10.0, 30.0, 100.0)),
    "dip_vae_i": dict(field="lambda_od", values=(1.0, 10.0, 50.0)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg or "small", DATASETS)
  config = ml_collections.ConfigDict()
  config.study = "disentanglement"  # research/studies/disentanglement.py
  config.dataset = DATASETS[arg]  # dsprites_vae's dataset= ARG
  # Each model (dsprites_vae's objective= ARG): the task field swept and its values, and
  # optionally ``overrides``, config fields of its runs alone (nested, as run_overrides).
  config.models = ml_collections.ConfigDict(MODELS)
  config.seeds = (0, 1, 2, 3, 4)  # each setting's replicas; the intervals are over these
  config.total_steps = STEPS[arg]  # every setting's budget
  config.rank_by = "mig"  # picks the best and median runs whose traversals are shown
  config.run_overrides = ml_collections.ConfigDict()  # every run's, e.g. {"model": {...}}
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  return config
