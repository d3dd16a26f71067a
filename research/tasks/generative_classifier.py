"""The generative (Bayes) classifier of a class-conditional VAE: the CVAE of
research/tasks/vae.py, trained as it is (the ELBO of p(x | y) with the true label), that
also classifies by Bayes' rule,

  logits_y(x) = log p(x | y) + log p(y),   probs = softmax(logits) = p(y | x),

so every classifier evaluator and study applies to it (capability ``classifier``).

``config.task``:
  class_bound    how log p(x | y) is estimated per class: iwae, the importance-sampled
                 log-likelihood (1/k) sum_i p(x, z_i | y) / q(z_i | x, y) (a consistent
                 estimate, a lower bound in expectation), or elbo, the mean over the k
                 samples of log p(x | z_i, y) minus the closed-form KL
  class_samples  k, posterior samples per class and image; the classes share them (common
                 random numbers: the comparison between classes has less noise than
                 each estimate)
  class_prior    train: log p(y) from the training split's label frequencies (each class
                 counted at least once), set before the first step; uniform: -log C

Predictions: ``logits`` and ``probs`` as above; ``class_log_likelihoods`` the (batch, C)
estimates of log p(x | y); ``features`` the same (what the model knows of x beyond its
label: how well each class explains it; Mahalanobis OOD scores read them).
"""
import jax
import jax.numpy as jnp
import numpy as np

from research import errors
from research.evaluation import likelihood
from research.tasks import base, vae

PRIOR = "class_prior"  # model_state collection: {"log_prior": (C,)}
BOUNDS = ("iwae", "elbo")
PRIORS = ("train", "uniform")


class Task(vae.Task):
  capabilities = vae.Task.capabilities | {base.CLASSIFIER}
  predictions = vae.Task.predictions + ("logits", "probs", "features", "class_log_likelihoods")
  task_collections = vae.Task.task_collections + (PRIOR,)

  @classmethod
  def validate_config(cls, config):
    super().validate_config(config)
    task, require = config.task, errors.require
    require(config.model.get("num_classes", 0) > 0, "model.num_classes",
            config.model.get("num_classes", 0),
            "the number of classes: a generative classifier is a class-conditional VAE")
    require(task.get("class_bound") in BOUNDS, "task.class_bound", task.get("class_bound"),
            f"one of {', '.join(BOUNDS)}")
    samples = task.get("class_samples")
    require(isinstance(samples, int) and samples >= 1, "task.class_samples", samples,
            "a positive number of posterior samples per class")
    require(task.get("class_prior") in PRIORS, "task.class_prior", task.get("class_prior"),
            f"one of {', '.join(PRIORS)}")

  def init_variables(self, rng, batch):
    variables = super().init_variables(rng, batch)
    variables[PRIOR] = {"log_prior": jnp.full((self.num_classes,), -np.log(self.num_classes),
                                              jnp.float32)}
    return variables

  @property
  def initializes(self) -> bool:
    return self.task.class_prior == "train"

  def initialize(self, state, batches):
    """log p(y): the label frequencies of ``batches`` (the training split)."""
    counts = np.zeros(self.num_classes)
    for batch in batches:
      labels = np.asarray(batch["label"])
      counts += np.bincount(labels[labels >= 0], minlength=self.num_classes)[:self.num_classes]
    counts = np.maximum(counts, 1.0)
    log_prior = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
    return state.replace(model_state={**state.model_state, PRIOR: {"log_prior": log_prior}})

  def class_log_likelihood(self, params, model_state, x, label, rng):
    """log p(x | y = label) per image, estimated as ``task.class_bound`` says."""
    condition = jax.nn.one_hot(label, self.num_classes)
    encode_rng, sample_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=encode_rng)
    k = self.task.class_samples
    recon_nll, log_w = self.log_weights(params, model_state, x, condition, mean, log_var,
                                        sample_rng, k)
    if self.task.class_bound == "elbo":
      return -(recon_nll.mean(0) + vae.gaussian_kl(mean, log_var).sum(-1))
    return likelihood.log_mean_exp(log_w)

  def class_log_likelihoods(self, params, model_state, batch, rng):
    x = batch["image"]

    def one_class(label):  # the same key for every class: common random numbers
      return self.class_log_likelihood(params, model_state, x,
                                       jnp.full((x.shape[0],), label), rng)

    return jax.lax.map(one_class, jnp.arange(self.num_classes)).T

  def logits(self, params, model_state, batch, rng):
    return (self.class_log_likelihoods(params, model_state, batch, rng)
            + model_state[PRIOR]["log_prior"])

  def probs(self, params, model_state, batch, rng):
    return jax.nn.softmax(self.logits(params, model_state, batch, rng), axis=-1)

  def features(self, params, model_state, batch, rng):
    return self.class_log_likelihoods(params, model_state, batch, rng)
