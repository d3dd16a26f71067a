"""Semi-supervised learning with a generative model: Kingma et al. (2014)'s M2
(research/models/m2.py), on a training split whose unlabelled rows have label -1
(``data.labelled_per_class``, research/data/splits.py) and whose batches carry
``data.labelled_batch_size`` labelled rows each (research/data/pipeline.py).

For a labelled (x, y), the CVAE's bound of p(x, y) up to the constant log p(y):

  -L(x, y) = E_q(z|x,y)[-log p(x | y, z)] + KL(q(z | x, y) || N(0, I))

and for an unlabelled x, with the classifier q(y | x):

  -U(x) = sum_y q(y | x) (-L(x, y)) - H(q(y | x))

The loss is the mean -L over a batch's labelled rows, the mean -U over its unlabelled rows
and ``task.alpha`` times the labelled rows' mean cross-entropy -log q(y | x) (Kingma et
al.'s classification term; their alpha = 0.1 N multiplies an expectation beside sums over
the data, which with per-batch means is alpha = 0.1 N / N_labelled here). Each -L uses
``task.num_samples`` posterior samples, the same for every class of an image.

Metrics: ``neg_bound`` (per row its -L or -U, nats), ``cross_entropy`` and ``accuracy``
(of q(y | x), over labelled rows). The classifier's predictions ``logits``, ``probs`` and
``features`` (its last hidden layer) make M2 a classifier for every classifier evaluator;
the VAE's (``encode``, ``elbo``, ``nll``, ...) condition on each example's label.
"""
import jax
import jax.numpy as jnp
from clu import metrics

from research import errors
from research.tasks import base, vae


def labelled_average(output: str):
  """The mean of ``output`` over the labelled rows (and, in evaluation, the real ones)."""
  def values(labelled, mask=None, **outputs):
    return {"values": outputs[output],
            "mask": labelled if mask is None else labelled & (mask > 0)}

  return metrics.Average.from_fun(values)


class Task(vae.Task):
  metrics = {
      "neg_bound": metrics.Average.from_output("neg_bound"),
      "cross_entropy": labelled_average("cross_entropy"),
      "accuracy": labelled_average("accuracy"),
  }
  capabilities = vae.Task.capabilities | {base.CLASSIFIER}
  predictions = vae.Task.predictions + ("logits", "probs", "features")

  @classmethod
  def validate_config(cls, config):
    super().validate_config(config)
    require = errors.require
    require(config.model.get("num_classes", 0) > 0, "model.num_classes",
            config.model.get("num_classes", 0), "the number of classes (M2 models p(x | y, z))")
    alpha = config.task.get("alpha")
    require(isinstance(alpha, (int, float)) and alpha >= 0, "task.alpha", alpha,
            "the weight of the classification term, zero or positive")

  def class_neg_elbos(self, params, model_state, x, rng, train):
    """-L(x, y) for every class y: (C, batch), the classes sharing their samples' keys."""
    def one_class(label):
      condition = jax.nn.one_hot(jnp.full((x.shape[0],), label), self.num_classes)
      encode_rng, sample_rng = jax.random.split(rng)
      mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=encode_rng,
                                  train=train)
      recon_nll, _ = self.log_weights(params, model_state, x, condition, mean, log_var,
                                      sample_rng, self.task.num_samples, train)
      return recon_nll.mean(0) + vae.gaussian_kl(mean, log_var).sum(-1)

    return jax.lax.map(one_class, jnp.arange(self.num_classes))

  def loss_fn(self, params, model_state, batch, rng, train):
    x, label = batch["image"], batch["label"]
    classify_rng, bound_rng = jax.random.split(rng)
    logits = self._apply(params, model_state, "classify", x, rng=classify_rng, train=train)
    neg_elbos = self.class_neg_elbos(params, model_state, x, bound_rng, train).T  # (B, C)
    log_q = jax.nn.log_softmax(logits, axis=-1)
    q = jnp.exp(log_q)
    neg_unlabelled = jnp.sum(q * (neg_elbos + log_q), axis=-1)  # E_q[-L] - H(q)
    labelled = label >= 0
    index = jnp.where(labelled, label, 0)[:, None]
    neg_labelled = jnp.take_along_axis(neg_elbos, index, axis=-1)[:, 0]
    cross_entropy = -jnp.take_along_axis(log_q, index, axis=-1)[:, 0]
    num_labelled = jnp.maximum(labelled.sum(), 1)
    num_unlabelled = jnp.maximum((~labelled).sum(), 1)
    loss = (jnp.sum(jnp.where(labelled, neg_labelled + self.task.alpha * cross_entropy, 0.0))
            / num_labelled
            + jnp.sum(jnp.where(labelled, 0.0, neg_unlabelled)) / num_unlabelled)
    bound = jnp.where(labelled, neg_labelled, neg_unlabelled)
    outputs = {"neg_bound": bound, "neg_elbo": bound, "cross_entropy": cross_entropy,
               "accuracy": (jnp.argmax(logits, -1) == label).astype(jnp.float32),
               "labelled": labelled}
    return loss, (outputs, model_state)

  def logits(self, params, model_state, batch, rng):
    return self._apply(params, model_state, "classify", batch["image"], rng=rng)

  def probs(self, params, model_state, batch, rng):
    return jax.nn.softmax(self.logits(params, model_state, batch, rng), axis=-1)

  def features(self, params, model_state, batch, rng):
    return self._apply(params, model_state, "features", batch["image"], rng=rng)
