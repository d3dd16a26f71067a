"""python launch.py --config=m2 --workdir=/tmp/m2            # MNIST, 100 labels: not yet measured
python launch.py --config=m2:digits,labels=10 --workdir=/tmp/m2_digits  # offline: ~1 min

Semi-supervised learning with Kingma et al. (2014)'s M2 (research/tasks/semi_supervised.py,
research/models/m2.py): a class-conditional VAE p(x | y, z) with q(z | x, y) and a classifier
q(y | x), trained on the labelled bound for the ``labels`` per class of a balanced labelled
subset of the training split (drawn with ``data.labelled_seed``, recorded in
WORKDIR/labelled.json) and on the unlabelled bound for every other training image, plus
alpha times the labelled cross-entropy. Each batch holds 100 rows of the whole split and 100
labelled rows. Their sizes: 50 latents, one hidden layer of 500 softplus units in the
encoder, decoder and classifier, binarized pixels, Adam 3e-4. Validation and test keep every
label; ``test/accuracy`` is q(y | x)'s (Kingma et al.: 11.97% error with 100 labels).
ARG: ``dataset=`` (mnist, fashion_mnist, digits), ``labels=`` per class (10; 0: every
training label).
"""
import ml_collections

from configs import common, vae

TRAIN_EXAMPLES = {"mnist": 54000, "fashion_mnist": 54000, "digits": 1293}  # train[:90%]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg, dataset="mnist", labels=10,
                            choices={"dataset": tuple(TRAIN_EXAMPLES)})
  config = vae.get_config(f"dataset={parsed.dataset}")
  config.gate = ""
  config.task.name = "semi_supervised"  # research/tasks/semi_supervised.py
  # Kingma et al.'s alpha = 0.1 N beside sums over the data: with per-batch means of the
  # labelled and unlabelled bounds, 0.1 N / N_labelled (research/tasks/semi_supervised.py).
  labelled = 10 * parsed.labels if parsed.labels else TRAIN_EXAMPLES[parsed.dataset]
  config.task.alpha = 0.1 * TRAIN_EXAMPLES[parsed.dataset] / labelled
  config.model = ml_collections.ConfigDict(dict(
      name="m2", num_classes=10, latent_dim=50, hidden=(500,), classifier_hidden=(500,),
      activation="softplus", image_shape=config.model.get_ref("image_shape")))
  config.data.labelled_per_class = parsed.labels
  config.data.labelled_seed = 0  # the labelled subset's draw
  config.data.labelled_batch_size = 100
  config.batch_size = 200
  config.optimizer.learning_rate = 3e-4
  config.num_epochs = 50.0
  del config.evals["nll"]  # log p(x | y) is not what M2 is measured by
  config.evals.report = common.final_eval("classification_report")
  if parsed.dataset == "digits":
    config.data.labelled_batch_size = 50
    config.batch_size = 100
    config.model.latent_dim = 10
    config.num_epochs = 40.0
  return config
