"""python launch.py --config=cvae         # MNIST: not yet measured
python launch.py --config=cvae:digits  # bundled 8x8 digits, offline: seconds
python launch.py --config=cvae --mode=sample --config.task.sample_class=3  # 3s from its checkpoint

Class-conditional VAE on dynamically binarized MNIST: encoder and decoder see the
one-hot label; MLP 784-512-512-16, 30 epochs. It is also a generative (Bayes) classifier
(research/tasks/generative_classifier.py): argmax_y log p(x | y) + log p(y), log p(x | y)
by importance sampling with 10 samples per class, ``test/accuracy`` from the final
``classify`` evaluation (classification_report). Sample grids have one class per row;
--mode=sample draws ``task.sample_class`` (or one class per row when -1). MNIST needs a
TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR. ARG as ``vae``'s: ``dataset=``
mnist (default), fashion_mnist, cifar10 or digits, ``preset=iwae_arch`` (or just the
names).
"""
import ml_collections

from configs import common, vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``vae``'s config (its ARG too), conditioned on the label: 16 latents, 30 epochs."""
  config = vae.get_config(arg)
  config.task.name = "generative_classifier"  # research/tasks/generative_classifier.py
  config.task.class_bound = "iwae"  # log p(x | y) by importance sampling, or elbo
  config.task.class_samples = 10  # per class and image
  config.task.class_prior = "train"  # log p(y) from the training labels, or uniform
  config.num_epochs = 30.0
  config.gate = ""
  config.model.num_classes = 10  # class-conditional: the one-hot label in and out
  config.model.latent_dim = 16
  preset = common.parse_arg(arg, dataset="mnist", preset="", choices=vae.ARG_CHOICES).preset
  if preset:  # a preset's architecture wins over the CVAE's latent size
    config.model.update(common.VAE_PRESETS[preset])
  # The Bayes classifier argmax_y log p(x | y) + log p(y) on the test split: accuracy,
  # calibration, confusion matrix.
  config.evals.classify = common.final_eval("classification_report", accuracy=True)
  return config
