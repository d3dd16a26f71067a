"""python launch.py --config=hvae                              # two stochastic layers, IWAE k=5
    # --config.num_epochs=10: test NLL 112.81 nats (k=5,000; benchmarks/RESULTS.md)
python launch.py --config=hvae:objective=elbo                 # the same model on the ELBO
python launch.py --config=hvae:k=50                           # IWAE k=50 (elbo,k=50 as well)
python launch.py --config=hvae:inference=ladder               # LVAE-style top-down inference
python launch.py --config=hvae:digits                         # bundled 8x8 digits, offline: seconds

Burda et al. (2016)'s two-stochastic-layer VAE (section 5): x -> 200-200 tanh -> z1 (100,
Gaussian) -> 100-100 tanh -> z2 (50, Gaussian), mirrored in the generative model (p(z2) =
N(0, I), p(z1 | z2) through 100-100 tanh, Bernoulli p(x | z1) through 200-200 tanh;
research/models/hierarchical_vae.py), on dynamically binarized MNIST, 50 epochs, trained on
the IWAE bound with k=5 (``objective=elbo``: the ELBO, its k samples averaged) or with
``inference=ladder``: q(z2 | x) and q(z1 | z2, x) precision-weighted between a bottom-up
estimate and the prior (Sønderby et al. 2016). The final evaluation adds the test NLL by
importance sampling with the paper's k=5,000 (100 on digits) and the test metrics ``kl_z1``,
``kl_z2``, each layer's KL estimate (a collapsed layer reads ~0). MNIST needs a TFDS data dir
with mnist prepared, TFDS_DATA_DIR=DIR. A longer run (``--config.num_epochs=N``) resumes
from its newest checkpoint when the command is rerun with the same workdir.

ARG: ``dataset=`` mnist (default), fashion_mnist, cifar10 or digits; ``objective=`` iwae
(default) or elbo; ``k=`` the samples per image of the bound (5); ``inference=`` bottom_up
(default) or ladder; bare values work for the dataset, objective and inference
(``hvae:ladder,digits``). Each is also a field: ``--config.task.objective``,
``--config.task.num_samples``, ``--config.model.inference``.
"""
import ml_collections

from configs import common, vae

# research/models/hierarchical_vae.py:INFERENCES, spelled out: loading a config imports no JAX.
ARG_CHOICES = {"dataset": common.IMAGE_DATASETS, "objective": ("iwae", "elbo"),
               "inference": ("bottom_up", "ladder")}
NLL_SAMPLES = 5000  # the IWAE paper's protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``vae``'s data, training and evaluations with the two-layer model and task."""
  arg = common.parse_arg(arg, dataset="mnist", objective="iwae", k=5, inference="bottom_up",
                         choices=ARG_CHOICES)
  config = vae.get_config(f"dataset={arg.dataset}")
  config.gate = ""

  config.task.name = "hierarchical_vae"  # research/tasks/hierarchical_vae.py
  config.task.objective = arg.objective
  config.task.num_samples = arg.k

  config.model = ml_collections.ConfigDict()
  config.model.name = "hierarchical_vae"  # research/models/hierarchical_vae.py
  config.model.latent_dims = (100, 50)  # z1, z2: from the pixels up
  config.model.hidden = ((200, 200), (100, 100))  # x -> z1 and z1 -> z2; mirrored down
  config.model.activation = "tanh"
  config.model.inference = arg.inference
  config.model.image_shape = ml_collections.config_dict.placeholder(tuple)  # None: the data's

  if arg.dataset != "digits":
    config.evals.nll.num_samples = NLL_SAMPLES
  # The latents report's per-dimension KL is against N(0, I), which only z2's prior is;
  # the per-layer KL estimates (test/kl_z1, test/kl_z2) stand in for it.
  del config.evals["latents"]
  return config
