"""python launch.py --config=studies/ood --workdir=/tmp/ood_digits   # offline: digits vs flips
python launch.py --config=studies/ood:mnist --config.data_dir=DIR --workdir=/tmp/ood --config.vae_epochs=10
    # best generative AUROC over 3 seeds: Fashion->MNIST 0.980 (raw NLL 0.126), MNIST->Fashion
    # 1.000, Fashion->vflip 0.875, ->hflip 0.684; 42 runs, 3.7 h (benchmarks/RESULTS.md)

OOD detection, classifier scores against generative scores (research/studies/ood.py): per
in-distribution dataset and seed a classifier (MSP, energy, Mahalanobis), a Bernoulli VAE
on binarized pixels and a discretized-logistic VAE on grey levels (-ELBO, IS NLL with
``num_samples``, input-complexity corrections, likelihood regret, typicality test, an
OC-SVM on the posterior means), each VAE with a background model on perturbed inputs for
the likelihood ratio (Ren et al. 2019), an autoencoder and Deep SVDD (reconstruction
error, distance to the centre), and an OC-SVM on PCA features of the pixels.
Outputs in STUDY_DIR: ood.md / ood.csv (every score on every pair: AUROC, AUPR-in/out,
FPR95, mean and 95% interval over seeds, anchors from the literature), best.md, roc_*.png,
hist_*.png.

ARG: ``mnist`` (MNIST -> Fashion-MNIST, Fashion-MNIST -> MNIST and its vertical and
horizontal flips; needs both prepared in the TFDS data dir) or ``digits`` (the bundled 8x8
digits against their flips and inverted digits: minutes, offline).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

TEST = lambda name: dict(data=dict(name=name, split="test"))  # noqa: E731
FLIPS = dict(vflip=dict(data="test", preprocess="flip_vertical"),
             hflip=dict(data="test", preprocess="flip_horizontal"))
PAIRS = {
    "mnist": {"mnist": {"fashion_mnist": TEST("fashion_mnist")},
              "fashion_mnist": {"mnist": TEST("mnist"), **FLIPS}},
    "digits": {"digits": {**FLIPS, "inverted": dict(data="test", preprocess="scale(255, 0)")}},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, PAIRS)
  config = ml_collections.ConfigDict()
  config.study = "ood"  # research/studies/ood.py
  # In-distribution dataset (each a config ARG) -> its OOD sets: NAME -> dict(data=a split
  # or data fields with a split, preprocess=ops applied to the raw images).
  config.pairs = PAIRS[arg]
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  config.classifier = "cnn_fast"  # a classifier config; "": no classifier
  config.vaes = ("vae_bernoulli", "vae_grey")  # research/studies/ood.py:VAES
  config.likelihood_ratio = True  # also train each VAE's background model
  # One-class models of the in-distribution training split (research/studies/ood.py).
  config.one_class = ("autoencoder", "deep_svdd")
  config.one_class_epochs = 3  # > 0: their epochs, else their configs' (10)
  # OC-SVMs on PCA features of the pixels (in the classifier's run) and of the VAEs'
  # posterior means (latent), fitted on the first ocsvm_examples of the training split.
  config.ocsvm = ("pixels", "latent")
  config.ocsvm_examples = 10000
  config.background_rate = 0.2  # the background's pixel replacement rate (Ren et al.: 0.1-0.2)
  config.vae_epochs = -1  # > 0: the VAEs train this many epochs, else configs/vae.py's 50
  config.num_samples = 100  # importance samples of the nll scores (0: -ELBO only)
  config.chunk = common.NLL_CHUNK
  config.typicality_batch = 10  # M of the typicality test
  # The tables' threshold chosen without OOD data: it accepts this fraction of each run's
  # validation split (its reference scores); the table reports the OOD recall there.
  config.accept = 0.95
  config.regret_steps = 200  # the likelihood regret's per-image fit (0: no regret)
  config.regret_examples = 2000  # the first examples of each set it scores
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
