"""python launch.py --config=transformations:normal=0 --workdir=/tmp/geom0  # MNIST, class 0
python launch.py --config=transformations:digits,normal=3 --workdir=/tmp/geom_digits  # offline

One-class anomaly detection by self-supervision (GEOM, Golan & El-Yaniv 2018;
research/models/transformations.py): a small CNN trained on the ``normal`` class to
recognise which of 72 geometric transformations (flip, translations by 8 pixels,
rotations by 90 degrees) an image went through; its mean cross entropy over the 72
scores the test split (``test/auroc``). Each training example draws 8 of them per step.
Figures: the one-class study (configs/studies/one_class.py, benchmarks/RESULTS.md).
ARG: as ``autoencoder``.
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config, arg = common.one_class_images(arg, "transformations")
  config.model.flips = True
  config.model.shift = 2 if arg.dataset == "digits" else 8  # GEOM's 8 for 28x28 and 32x32
  config.model.rotations = True
  config.model.train_transforms = 8
  config.model.conv_features = (16, 32, 64)
  config.model.conv_impl = common.CONV_IMPL
  config.eval_batch_size = 200  # x 72 transformed images
  config.optimizer.learning_rate = 1e-3
  config.num_epochs = 10.0
  if arg.dataset == "digits":
    config.total_steps = 300
  return config
