"""python launch.py --config=dsprites_vae:beta_tcvae        # 300,000 steps: not yet measured
python launch.py --config=dsprites_vae:dip_vae_i,small  # 5,000 steps: not yet measured
python launch.py --config=dsprites_vae:objective=beta_vae,dataset=small --config.task.beta=8
python launch.py --config=dsprites_vae:factor_vae,small  # 5,000 steps: not yet measured

Disentangling VAEs on the generated dSprites-like sprites (research/data/dsprites_like.py,
offline), the protocol of Locatello et al. (2019, disentanglement_lib): the convolutional
encoder and decoder of Burgess et al. (2018) (conv 32-32-64-64, 4x4 stride 2, dense 256,
10 latents; research/models/conv_vae.py), a Bernoulli decoder on the binary 64x64 images,
batches of 64, Adam at a constant 1e-4, 300,000 steps (``small``: 5,000). The one
``train`` split is cut into train[:90%] / train[90%:95%] (validation) / train[95%:] (test).

ARG: ``objective=`` beta_vae (default: the ELBO with beta = 4 on the KL, no warm-up),
beta_tcvae (beta = 6 on the total correlation, minibatch-weighted sampling over N =
``task.dataset_size``, set here to the training split's size), dip_vae_i (lambda_od = 10,
lambda_d = 10 lambda_od), dip_vae_ii (lambda_od = 10, lambda_d = lambda_od) or factor_vae
(Kim & Mnih 2018, research/tasks/factor_vae.py: gamma = 30 on the TC that a discriminator of
six 1,000-unit layers estimates, trained with its own Adam at 1e-4, b1 0.5, b2 0.9, in
``optimizer.groups.discriminator``); ``dataset=``
dsprites_like (default, the full grid: 737,280 images, minutes to prepare, ~3 GB in memory)
or dsprites_like/small (11,520; also ``small``). Each also as just the name. The defaults
lie in disentanglement_lib's sweeps: beta 1-16, TC beta 1-10, lambda_od 1-50, gamma 10-100.

The final evaluation: test metrics (-ELBO, KL, the objective's ``loss`` and its TC or DIP
penalty), the latents report (per-dimension KL, active units) and the ``disentanglement``
evaluator (research/evaluators/disentanglement.py: MIG, SAP, DCI, FactorVAE and BetaVAE
scores) on the test split (36,864 images; ``small``: on the 10,368 training images, its
test split being 576), with 1,000 training and 500 evaluation votes for the FactorVAE and
BetaVAE scores instead of disentanglement_lib's 10,000 and 5,000
(``--config.evals.disentanglement.num_votes_train=10000``, ``...num_votes_eval=5000``).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"dsprites_like": "dsprites_like", "dsprites_like/small": "dsprites_like/small",
            "small": "dsprites_like/small"}
# Each objective: the task's objective and its fields.
OBJECTIVES = {
    "beta_vae": dict(objective="elbo", beta=4.0),
    "beta_tcvae": dict(objective="beta_tcvae", beta=6.0),
    "dip_vae_i": dict(objective="dip_vae_i", lambda_od=10.0, lambda_d_factor=10.0),
    "dip_vae_ii": dict(objective="dip_vae_ii", lambda_od=10.0, lambda_d_factor=1.0),
    "factor_vae": dict(name="factor_vae", objective="factor_vae", gamma=30.0,
                       discriminator_hidden=(1000,) * 6),
}
# FactorVAE's discriminator: its own optimizer (disentanglement_lib's discriminator/Adam).
DISCRIMINATOR_OPTIMIZER = dict(learning_rate=1e-4, b1=0.5, b2=0.9)
NUM_IMAGES = {"dsprites_like": 737_280, "dsprites_like/small": 11_520}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, objective="beta_vae", dataset="dsprites_like",
                         choices={"objective": tuple(OBJECTIVES), "dataset": tuple(DATASETS)})
  dataset = DATASETS[arg.dataset]
  small = dataset != "dsprites_like"
  config = common.base_config()
  config.batch_size = 64
  config.eval_batch_size = 576  # divides the validation and test splits: no padded batch
  config.total_steps = 5_000 if small else 300_000
  config.log_every_steps = 100 if small else 500
  config.eval_every_steps = 1_000 if small else 10_000
  config.checkpoint_every_steps = config.eval_every_steps

  config.data.name = dataset
  config.data.train_split = "train[:90%]"
  config.data.val_split = "train[90%:95%]"
  config.data.test_split = "train[95%:]"
  config.data.preprocess = "scale(0, 1)|binarize"  # the images are 0/255: binarize keeps them

  config.optimizer.learning_rate = 1e-4
  config.optimizer.schedule = "constant"
  if arg.objective == "factor_vae":
    config.optimizer.groups = ml_collections.ConfigDict(
        {"discriminator": DISCRIMINATOR_OPTIMIZER})

  config.task.name = "vae"  # research/tasks/vae.py
  config.task.likelihood = "bernoulli"
  config.task.num_samples = 1
  config.task.beta = 1.0  # KL weight (elbo) or TC weight (beta_tcvae)
  config.task.kl_warmup_steps = 0
  config.task.sample_class = -1
  config.task.dataset_size = NUM_IMAGES[dataset] * 9 // 10  # N of beta_tcvae: train[:90%]
  config.task.lambda_od = 10.0  # DIP-VAE
  config.task.lambda_d_factor = 10.0  # DIP-VAE: lambda_d = lambda_d_factor * lambda_od
  config.task.update(OBJECTIVES[arg.objective])

  config.model.name = "conv_vae"  # research/models/conv_vae.py
  config.model.num_classes = 0
  config.model.latent_dim = 10
  config.model.channels = (32, 32, 64, 64)
  config.model.hidden = 256
  config.model.image_shape = config_dict.placeholder(tuple)  # None: the data's

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.images = common.periodic_eval(config, "images")
  config.evals.test = common.final_eval("metrics")
  config.evals.latents = common.final_eval("latents")
  config.evals.disentanglement = common.final_eval(
      "disentanglement", data="train" if small else "test", num_votes_train=1_000,
      num_votes_eval=500)
  return config
