"""Variational autoencoders: the ELBO (optionally beta-weighted, with a KL warm-up),
the importance-weighted bound (IWAE), disentangling objectives (beta-TCVAE, DIP-VAE I and
II), class-conditional models (CVAE), and the test log-likelihood by importance sampling.
All terms are in nats per image.

  -ELBO(x)   = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))
  -IWAE_k(x) = -E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_i ~ q(z|x)

The disentangling objectives add a term estimated over the whole training batch (M images)
to the -ELBO, as disentanglement_lib (methods/unsupervised/vae.py) does:

  beta_tcvae  (Chen et al. 2018, "Isolating sources of disentanglement in VAEs") the KL's
              decomposition E[KL] = index-code MI + total correlation (TC) + dimension-wise
              KL with the TC weighted by beta (alpha = gamma = 1): -ELBO + (beta - 1) TC.
              q(z) and its marginals by minibatch-weighted sampling (``kl_decomposition``).
  dip_vae_i   (Kumar et al. 2018, "Variational inference of disentangled latent concepts
  dip_vae_ii  from unlabeled observations", eqs. 6 and 7): -ELBO + lambda_od sum_{k!=l}
              C_kl^2 + lambda_d sum_k (C_kk - 1)^2, C the batch covariance of the posterior
              means (I) or of the aggregate posterior, E[diag sigma^2(x)] + Cov[mu(x)] (II).

``config.task``:
  likelihood     bernoulli (binarized images), logistic or categorical (8-bit grey
                 levels; see research/tasks/likelihoods.py)
  objective      elbo: minimise recon + beta_t * KL; iwae: minimise -IWAE_k; beta_tcvae,
                 dip_vae_i, dip_vae_ii: above (their metrics: loss, and mi, tc, dim_kl or
                 dip)
  num_samples    k, posterior samples per image in training and in the bound
  beta           weight of the KL term (elbo) or of the TC (beta_tcvae); 1 is the ELBO
  kl_warmup_steps  beta_t rises linearly from 0 to beta over these steps (0: off; elbo only)
  dataset_size   beta_tcvae: N, the training split's size, which the minibatch-weighted
                 sampling needs (the data's input spec has no size, so the config sets it)
  lambda_od      DIP-VAE: weight of the off-diagonal covariances (10 by default)
  lambda_d_factor  DIP-VAE: lambda_d = lambda_d_factor * lambda_od (disentanglement_lib: 10
                 for I, 1 for II; 10 by default)
  sample_class   CVAE: the class that --mode=sample draws (-1: one class per row)
"""
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics

from research import errors
from research.evaluation import generative, images as images_lib, likelihood
from research.models import vae as vae_model
from research.tasks import base, likelihoods

NUM_IMAGES = 64  # images per summary grid
COLUMNS = 8  # images per grid row: interpolation and traversal steps
TRAVERSAL_RANGE = 3.0  # traversals sweep each latent over [-3, 3]
WARMUP = "kl_warmup"  # model_state collection that counts training steps for the warm-up
OBJECTIVES = ("elbo", "iwae", "beta_tcvae", "dip_vae_i", "dip_vae_ii")
BATCH_OBJECTIVES = OBJECTIVES[2:]  # estimated over the whole batch
# The disentangling objectives' fields, for configs that leave them out (every one but
# dsprites_vae): task.FIELD or this.
BATCH_DEFAULTS = {"dataset_size": 0, "lambda_od": 10.0, "lambda_d_factor": 10.0}


def gaussian_kl(mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(log_var)) || N(0, I)) per dimension, in closed form."""
  return 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)


gaussian_log_density = likelihoods.gaussian_log_density  # of each dimension


def gaussian_log_prob(z: jnp.ndarray, mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """log N(z; mean, exp(log_var)) summed over the last axis."""
  return jnp.sum(gaussian_log_density(z, mean, log_var), axis=-1)


def kl_decomposition(z, mean, log_var, dataset_size: int) -> dict[str, jnp.ndarray]:
  """Chen et al. (2018)'s terms of the KL for each z_i ~ q(z|x_i) of a batch of M, (M,):

    mi      log q(z_i|x_i) - log q(z_i)               index-code mutual information
    tc      log q(z_i) - sum_l log q(z_il)            total correlation
    dim_kl  sum_l log q(z_il) - log p(z_il)           dimension-wise KL

  with q(z) and its marginals q(z_l) by minibatch-weighted sampling, N = ``dataset_size``:
  log q(z_i) ~= logsumexp_j log q(z_i|x_j) - log(N M), and likewise each log q(z_il). The
  three add up to the one-sample KL estimate log q(z_i|x_i) - log p(z_i). Each log q estimate
  is biased low, by between log M and log N, so with D latents ``tc`` reads high: by
  (D - 1) log M exactly when the batch is the whole data set (N = M). Only the log(N M)
  constants are free of the parameters (disentanglement_lib's estimate drops them)."""
  log_q = gaussian_log_density(z[:, None], mean[None], log_var[None])  # (i, j, l)
  log_nm = math.log(dataset_size * z.shape[0])
  log_qz = jax.nn.logsumexp(log_q.sum(-1), axis=1) - log_nm
  log_marginals = jnp.sum(jax.nn.logsumexp(log_q, axis=1) - log_nm, axis=-1)
  zeros = jnp.zeros_like(z)
  return {"mi": gaussian_log_prob(z, mean, log_var) - log_qz, "tc": log_qz - log_marginals,
          "dim_kl": log_marginals - gaussian_log_prob(z, zeros, zeros)}


def aggregate_covariance(mean, log_var, full: bool) -> jnp.ndarray:
  """The batch covariance (1/M normalised) of the posterior means, Cov[mu(x)] (DIP-VAE-I);
  ``full``: of the aggregate posterior, E[diag exp(log_var(x))] + Cov[mu(x)] (DIP-VAE-II)."""
  centred = mean - mean.mean(0)
  covariance = centred.T @ centred / mean.shape[0]
  return covariance + jnp.diag(jnp.exp(log_var).mean(0)) if full else covariance


def dip_penalty(covariance, lambda_od: float, lambda_d: float) -> jnp.ndarray:
  """lambda_od sum_{k!=l} C_kl^2 + lambda_d sum_k (C_kk - 1)^2 (Kumar et al. 2018): zero
  for C = I."""
  diagonal = jnp.diagonal(covariance)
  off_diagonal = covariance - jnp.diag(diagonal)
  return lambda_od * jnp.sum(jnp.square(off_diagonal)) + lambda_d * jnp.sum(
      jnp.square(diagonal - 1.0))


def reparameterize(rng, mean, log_var, num_samples: int) -> jnp.ndarray:
  """``num_samples`` draws of z ~ q(z|x), shaped (num_samples,) + mean.shape."""
  eps = jax.random.normal(rng, (num_samples,) + mean.shape, mean.dtype)
  return vae_model.gaussian_sample(mean, log_var, eps)


def kl_weight(beta: float, warmup_steps: int, step) -> jnp.ndarray:
  """beta, reached linearly over ``warmup_steps`` training steps (at once when 0)."""
  if warmup_steps <= 0:
    return jnp.asarray(beta, jnp.float32)
  return beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def reconstructed_images(x: jnp.ndarray) -> int:
  """How many of the batch ``x`` the ``reconstructions`` grid shows: whole rows of
  ``COLUMNS``, at most half of NUM_IMAGES (the other half are their reconstructions)."""
  return min(NUM_IMAGES // 2, x.shape[0] // COLUMNS * COLUMNS)


def reconstruction_grid(x: jnp.ndarray, recon: jnp.ndarray) -> jnp.ndarray:
  """The first ``len(recon)`` images of ``x`` and their reconstructions ``recon``, as a grid
  of ``COLUMNS`` a row: each row of inputs followed by the row of their reconstructions."""
  rows = lambda images: images.reshape((-1, COLUMNS) + x.shape[1:])  # noqa: E731
  pairs = jnp.stack([rows(x[:len(recon)]), rows(recon)], axis=1)
  return pairs.reshape((-1,) + x.shape[1:])


class Task(base.BaseTask):
  """Predictions, per image: ``encode`` (posterior mean and log-variance), ``reconstruct``
  (the decoded posterior mean), ``elbo`` (one posterior sample, nats), ``nll`` (-log p(x)
  by importance sampling with ``num_samples`` from q(z|x), ``chunk`` at a time); and
  ``sample`` from the prior. A disentangling objective adds its metrics (``objective_metrics``)."""
  metrics = {
      "neg_elbo": metrics.Average.from_output("neg_elbo"),
      "recon_nll": metrics.Average.from_output("recon_nll"),
      "kl": metrics.Average.from_output("kl"),
      "neg_bound": metrics.Average.from_output("neg_bound"),  # -IWAE_k; k=1: one-sample ELBO
      "bits_per_dim": metrics.Average.from_output("bits_per_dim"),  # of -ELBO
  }
  capabilities = frozenset({base.GENERATIVE, base.LATENT, base.IMAGES})
  predictions = ("encode", "reconstruct", "elbo", "nll", "regret")
  task_collections = (WARMUP,)  # model_state the task keeps, which the model never sees
  objectives, batch_objectives = OBJECTIVES, BATCH_OBJECTIVES  # a subclass may add its own

  def __init__(self, config):
    super().__init__(config)
    self.task = config.task
    self.nll_fn = likelihoods.NLL[config.task.likelihood]
    self.mean_fn = likelihoods.MEAN[config.task.likelihood]
    self.num_classes = config.model.get("num_classes", 0)
    self.image_shape = tuple(config.model.image_shape)
    self.model = self.model.clone(
        outputs_per_pixel=likelihoods.OUTPUTS_PER_PIXEL[config.task.likelihood])
    self.metrics = {**self.metrics, **self.objective_metrics(config.task.objective)}

  @staticmethod
  def objective_metrics(objective: str) -> dict:
    """A disentangling objective's extra metrics: ``loss`` (what training minimises, per
    image) and its batch estimates (beta_tcvae: ``mi``, ``tc``, ``dim_kl``; DIP-VAE:
    ``dip``, the weighted penalty)."""
    if objective not in BATCH_OBJECTIVES:
      return {}
    names = ("loss",) + (("mi", "tc", "dim_kl") if objective == "beta_tcvae" else ("dip",))
    return {name: metrics.Average.from_output(name) for name in names}

  def batch_field(self, name: str):
    """A disentangling objective's field: ``task.NAME`` or its BATCH_DEFAULTS value."""
    return self.task.get(name, BATCH_DEFAULTS[name])

  @classmethod
  def complete_config(cls, config, input_spec):
    """``model.image_shape`` left unset (None) is read from the data."""
    if config.model.get("image_shape") is None and "image" in input_spec:
      config.model.image_shape = tuple(input_spec["image"][0])

  @classmethod
  def validate_config(cls, config):
    task, require = config.task, errors.require
    require(task.likelihood in likelihoods.NLL, "task.likelihood", task.likelihood,
            f"one of {sorted(likelihoods.NLL)}")
    cls.validate_likelihood(config)
    require(task.objective in cls.objectives, "task.objective", task.objective,
            f"elbo or iwae, or a disentangling objective: {', '.join(cls.batch_objectives)}")
    if task.objective in cls.batch_objectives:
      cls.validate_batch_objective(config)
    require(task.num_samples >= 1, "task.num_samples", task.num_samples, "a positive integer")
    require(task.beta >= 0, "task.beta", task.beta, "zero or positive")
    require(task.kl_warmup_steps >= 0, "task.kl_warmup_steps", task.kl_warmup_steps,
            "zero (no warm-up) or a positive number of steps")
    if task.kl_warmup_steps and config.microbatch_size:
      require(config.microbatch_size == config.batch_size, "microbatch_size",
              config.microbatch_size,
              "0 with task.kl_warmup_steps > 0 (the warm-up counts loss evaluations)")
    num_classes = config.model.get("num_classes", 0)
    require(num_classes >= 0, "model.num_classes", num_classes, "0 (unconditional) or positive")
    if num_classes:
      require(-1 <= task.sample_class < num_classes, "task.sample_class", task.sample_class,
              f"-1 (one class per row) or a class below model.num_classes={num_classes}")
      require("label" in config.data.features, "data.features", tuple(config.data.features),
              "a list with label for a conditional model (model.num_classes > 0)")
    else:
      require(task.sample_class == -1, "task.sample_class", task.sample_class,
              "-1 for an unconditional model (model.num_classes=0)")

  @classmethod
  def validate_likelihood(cls, config):
    """The likelihood fits the images: bernoulli for binarized ones, else grey levels."""
    likelihood = config.task.likelihood
    binarized = "binarize" in config.data.preprocess
    errors.require(binarized == (likelihood == "bernoulli") and likelihood != "gaussian",
                   "task.likelihood", likelihood,
                   "bernoulli for binarized images (data.preprocess with binarize), logistic or "
                   "categorical for grey levels")

  @classmethod
  def validate_batch_objective(cls, config):
    """The fields a disentangling objective (estimated over the whole batch) needs."""
    task, require, objective = config.task, errors.require, config.task.objective
    require(task.kl_warmup_steps == 0, "task.kl_warmup_steps", task.kl_warmup_steps,
            f"0 with task.objective={objective} (the warm-up ramps the elbo objective's beta)")
    require(config.microbatch_size in (0, config.batch_size), "microbatch_size",
            config.microbatch_size,
            f"0 with task.objective={objective} (its estimates are over the whole batch)")
    if objective == "beta_tcvae":
      size = task.get("dataset_size", BATCH_DEFAULTS["dataset_size"])
      require(isinstance(size, int) and size >= config.batch_size, "task.dataset_size", size,
              "the training split's number of images (>= batch_size), which "
              "minibatch-weighted sampling needs")
    elif objective in ("dip_vae_i", "dip_vae_ii"):
      for name in ("lambda_od", "lambda_d_factor"):
        value = task.get(name, BATCH_DEFAULTS[name])
        require(value >= 0, f"task.{name}", value, "zero or positive")

  def condition(self, batch: dict) -> jnp.ndarray | None:
    """The one-hot label for a conditional model; None otherwise."""
    return jax.nn.one_hot(batch["label"], self.num_classes) if self.num_classes else None

  def init_variables(self, rng, batch):
    shape = tuple(batch["image"].shape[1:])
    if shape != self.image_shape:
      raise errors.ConfigError(
          f"model.image_shape={self.image_shape} does not match the data's images {shape}; set "
          f"--config.model.image_shape={shape} or use the config for this dataset")
    params_rng, dropout_rng = jax.random.split(rng)
    variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng},
                                     batch["image"], self.condition(batch), train=False))
    if self.task.kl_warmup_steps > 0:
      variables[WARMUP] = {"step": jnp.zeros((), jnp.int32)}
    return variables

  def _apply(self, params, model_state, method, *args, rng, train=False):
    model_state = {k: v for k, v in model_state.items() if k not in self.task_collections}
    out, _ = base.apply_model(self.model, params, model_state, *args, rng=rng, train=train,
                              method=method, matmul_precision=self.matmul_precision)
    return out

  def decode_mean(self, params, model_state, z, condition, rng):
    """The decoder's image (e.g. Bernoulli means) for latent codes z."""
    return self.mean_fn(self._apply(params, model_state, "decode", z, condition, rng=rng))

  def log_weights(self, params, model_state, x, condition, mean, log_var, rng, num_samples,
                  train=False):
    """-log p(x|z_i) and log w_i = log p(x, z_i) - log q(z_i|x), each (num_samples, batch)."""
    sample_rng, dropout_rng = jax.random.split(rng)
    z = reparameterize(sample_rng, mean, log_var, num_samples)
    return self.sample_log_weights(params, model_state, x, condition, mean, log_var, z,
                                   dropout_rng, train)

  def sample_log_weights(self, params, model_state, x, condition, mean, log_var, z, rng,
                         train=False):
    """``log_weights`` of given posterior samples z (num_samples, batch, latent_dim)."""
    out = self._apply(params, model_state, "decode", z, condition, rng=rng, train=train)
    recon_nll = self.nll_fn(out, x)
    zeros = jnp.zeros_like(mean)
    log_w = -recon_nll + gaussian_log_prob(z, zeros, zeros) - gaussian_log_prob(z, mean, log_var)
    return recon_nll, log_w

  def loss_fn(self, params, model_state, batch, rng, train):
    x, condition = batch["image"], self.condition(batch)
    encode_rng, sample_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=encode_rng,
                                train=train)
    z_rng, dropout_rng = jax.random.split(sample_rng)  # as log_weights
    z = reparameterize(z_rng, mean, log_var, self.task.num_samples)
    recon_nll, log_w = self.sample_log_weights(params, model_state, x, condition, mean, log_var,
                                               z, dropout_rng, train)
    outputs = self.bound_outputs(recon_nll.mean(0), gaussian_kl(mean, log_var).sum(-1), log_w)
    if self.task.objective in self.batch_objectives:
      penalty, terms = self.batch_penalty(params, z, mean, log_var, rng)
      outputs.update(terms, loss=outputs["neg_elbo"] + penalty)
    return self.objective_loss(outputs, model_state, train)

  def bound_outputs(self, recon_nll, kl, log_w) -> dict:
    """The metrics' per-image outputs from the bound's terms: ``recon_nll`` and ``kl``
    (batch,), each averaged over the samples, and the log weights ``log_w`` (k, batch)."""
    neg_elbo = recon_nll + kl
    return {"neg_elbo": neg_elbo, "recon_nll": recon_nll, "kl": kl,
            "neg_bound": -likelihood.log_mean_exp(log_w),
            "bits_per_dim": likelihoods.bits_per_dim(neg_elbo, self.image_shape)}

  def objective_loss(self, outputs: dict, model_state, train: bool):
    """``loss_fn``'s result from ``bound_outputs`` (with a disentangling objective's
    ``loss``): the objective's batch mean, and the warm-up's step counted in training."""
    if self.task.objective == "iwae":
      loss = jnp.mean(outputs["neg_bound"])
    elif self.task.objective in self.batch_objectives:
      loss = jnp.mean(outputs["loss"])
    else:
      step = model_state[WARMUP]["step"] if WARMUP in model_state else None
      beta = kl_weight(self.task.beta, self.task.kl_warmup_steps, step)
      loss = jnp.mean(outputs["recon_nll"] + beta * outputs["kl"])
    if train and WARMUP in model_state:
      model_state = {**model_state, WARMUP: {"step": model_state[WARMUP]["step"] + 1}}
    return loss, (outputs, model_state)

  def batch_penalty(self, params, z, mean, log_var, rng) -> tuple[jnp.ndarray, dict]:
    """A disentangling objective's term added to each image's -ELBO, and its metrics, from
    the batch's posteriors and samples z (num_samples, batch, latent_dim) (``params`` and
    the loss's key ``rng`` for a subclass's objective that needs them). beta_tcvae: (beta
    - 1) TC, the terms averaged over the k sample sets; DIP-VAE: the penalty, a batch scalar
    given to every image. (Evaluation batches are estimated the same way; a padded last
    batch's estimates include its padding.)"""
    if self.task.objective == "beta_tcvae":
      size = self.batch_field("dataset_size")
      terms = jax.vmap(lambda sample: kl_decomposition(sample, mean, log_var, size))(z)
      terms = {name: value.mean(0) for name, value in terms.items()}
      return (self.task.beta - 1.0) * terms["tc"], terms
    covariance = aggregate_covariance(mean, log_var, full=self.task.objective == "dip_vae_ii")
    lambda_od = self.batch_field("lambda_od")
    dip = dip_penalty(covariance, lambda_od, self.batch_field("lambda_d_factor") * lambda_od)
    dip = jnp.broadcast_to(dip, mean.shape[:1])
    return dip, {"dip": dip}

  def importance_log_weights(self, params, model_state, x, condition,
                             rng) -> likelihood.LogWeightsFn:
    """``(key, n) -> log weights (n, batch)`` of n fresh samples of the proposal q(z|x),
    encoded once here (``rng``: the encoder's key)."""
    mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=rng)
    return lambda key, n: self.log_weights(  # noqa: E731
        params, model_state, x, condition, mean, log_var, key, n)[1]

  def test_log_likelihood(self, params, model_state, batch, rng, num_samples: int, chunk: int):
    """log p(x) per image by importance sampling with q(z|x) as the proposal."""
    x, condition = batch["image"], self.condition(batch)
    encode_rng, sample_rng = jax.random.split(rng)
    log_weights_fn = self.importance_log_weights(params, model_state, x, condition, encode_rng)
    return likelihood.importance_sampled_log_likelihood(
        log_weights_fn, sample_rng, num_samples, chunk)

  def encode(self, params, model_state, batch, rng):
    return self._apply(params, model_state, "encode", batch["image"], self.condition(batch),
                       rng=rng)

  def reconstruct(self, params, model_state, batch, rng):
    mean, _ = self.encode(params, model_state, batch, rng)
    return self.decode_mean(params, model_state, mean, self.condition(batch), rng)

  def elbo(self, params, model_state, batch, rng):
    _, (outputs, _) = self.loss_fn(params, model_state, batch, rng, False)
    return -outputs["neg_elbo"]

  def nll(self, params, model_state, batch, rng, num_samples: int, chunk: int):
    return -self.test_log_likelihood(params, model_state, batch, rng, num_samples, chunk)

  def regret(self, params, model_state, batch, rng, steps: int, learning_rate: float,
             fit_samples: int, num_samples: int):
    """Likelihood regret per image (Xiao et al. 2020, "Likelihood regret: an out-of-
    distribution detection score for variational auto-encoder"): how much the ELBO of x
    gains when the posterior is fitted to x alone instead of amortized by the encoder,
    -ELBO(x; encoder) - min -ELBO(x; q_x), in nats (higher = more OOD).

    Xiao et al. refit the encoder's weights to each x; for one x an encoder can output any
    Gaussian (its last layer's bias alone can), so that optimum is the optimum over the
    Gaussian q_x = N(mean, exp(log_var)) itself, which is what is fitted here: ``steps`` of
    Adam at ``learning_rate`` from the encoder's (mean, log_var), each step on the ELBO of
    ``fit_samples`` fresh samples. Both ELBOs are then estimated with the same
    ``num_samples`` samples (the score's noise: the difference of two estimates). Every
    image is fitted independently inside one jitted loop (the objective is a sum over the
    batch, so each image's gradient is its own)."""
    x, condition = batch["image"], self.condition(batch)
    encode_rng, fit_rng, eval_rng = jax.random.split(rng, 3)
    amortized = self._apply(params, model_state, "encode", x, condition, rng=encode_rng)

    def neg_elbo(posterior, key, samples):
      mean, log_var = posterior
      recon_nll, _ = self.log_weights(params, model_state, x, condition, mean, log_var, key,
                                      samples)
      return recon_nll.mean(0) + gaussian_kl(mean, log_var).sum(-1)

    optimizer = optax.adam(learning_rate)

    def fit_step(i, carry):
      posterior, opt_state = carry
      key = jax.random.fold_in(fit_rng, i)
      grads = jax.grad(lambda q: neg_elbo(q, key, fit_samples).sum())(posterior)
      updates, opt_state = optimizer.update(grads, opt_state)
      return optax.apply_updates(posterior, updates), opt_state

    fitted, _ = jax.lax.fori_loop(0, steps, fit_step, (amortized, optimizer.init(amortized)))
    return (neg_elbo(amortized, eval_rng, num_samples)
            - neg_elbo(fitted, eval_rng, num_samples))

  def sample_condition(self, num: int, sample_class: int) -> jnp.ndarray | None:
    """One-hot classes for ``num`` samples: all ``sample_class``, or one class per grid row
    (of ``COLUMNS``), cycling through the classes."""
    if not self.num_classes:
      return None
    labels = (jnp.full((num,), sample_class) if sample_class >= 0
              else (jnp.arange(num) // COLUMNS) % self.num_classes)
    return jax.nn.one_hot(labels, self.num_classes)

  def sample(self, params, model_state, rng, num: int) -> jnp.ndarray:
    """``num`` images decoded from the prior (of ``task.sample_class`` for a CVAE)."""
    z = jax.random.normal(rng, (num, self.model.latent_dim))
    condition = self.sample_condition(num, self.task.sample_class)
    return self.decode_mean(params, model_state, z, condition, rng)

  def num_summary_samples(self) -> int:
    """Prior samples in the ``samples`` summary: NUM_IMAGES, or for a CVAE one row of
    ``COLUMNS`` per class (every class shown)."""
    return self.num_classes * COLUMNS if self.num_classes else NUM_IMAGES

  def images(self, params, model_state, batch, rng):
    """Reconstructions, prior samples, interpolations, traversals (and for 2-D latents the
    decoded manifold), as batches whose grids have ``COLUMNS`` images a row, laid out as
    ``image_layouts`` says."""
    x, condition = batch["image"], self.condition(batch)
    mean, _ = self._apply(params, model_state, "encode", x, condition, rng=rng)
    decode = lambda z, c: self.decode_mean(params, model_state, z, c, rng)  # noqa: E731
    half = reconstructed_images(x)
    recon = decode(mean[:half], None if condition is None else condition[:half])
    num_samples = self.num_summary_samples()
    grids = {
        "reconstructions": reconstruction_grid(x, recon),
        "samples": decode(jax.random.normal(rng, (num_samples, mean.shape[-1])),
                          self.sample_condition(num_samples, -1)),
    }
    first = None if condition is None else condition[:1]
    codes = {"interpolations": generative.interpolations(mean[:COLUMNS], mean[COLUMNS:2 * COLUMNS],
                                                         COLUMNS),
             "traversals": generative.traversals(mean[0], COLUMNS, TRAVERSAL_RANGE)}
    if mean.shape[-1] == 2:
      codes["manifold"] = generative.manifold(COLUMNS)
    for name, z in codes.items():
      c = None
      if condition is not None:  # interpolations keep each start image's class
        c = condition[jnp.arange(len(z)) // COLUMNS] if name == "interpolations" else first
      grids[name] = decode(z, c)
    return grids

  def image_layouts(self) -> dict:
    """How each summary of ``images`` reads: its rows' and columns' labels and a caption
    (research/evaluation/images.py ``Layout``), drawn into its PNG."""
    steps = [f"{v:.1f}" for v in np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, COLUMNS)]
    fractions = [f"{t:.2g}" for t in np.linspace(0.0, 1.0, COLUMNS)]
    layouts = {
        "reconstructions": images_lib.Layout(
            COLUMNS, ("input", "reconstruction"),
            caption="each row of inputs is followed by their reconstructions (the decoded "
                    "posterior means)"),
        "samples": images_lib.Layout(
            COLUMNS, tuple(f"class {c}" for c in range(self.num_classes)),
            caption="decoded draws from the prior" + (", one class per row" if self.num_classes
                                                     else "")),
        "interpolations": images_lib.Layout(
            COLUMNS, column_labels=tuple(fractions),
            caption="each row decodes (1-t) z_a + t z_b, t above each column, between the "
                    "posterior means z_a, z_b of two images"),
        "traversals": images_lib.Layout(
            COLUMNS, tuple(f"z[{d}]" for d in range(self.model.latent_dim)), tuple(steps),
            caption=f"row z[d] sweeps latent d over [-{TRAVERSAL_RANGE:g}, {TRAVERSAL_RANGE:g}] "
                    f"(its value above each column), the others held at the first image's "
                    f"posterior mean"),
    }
    if self.model.latent_dim == 2:
      quantiles = [statistics.NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, COLUMNS)]
      layouts["manifold"] = images_lib.Layout(
          COLUMNS, tuple(f"z[1]={v:.1f}" for v in quantiles[::-1]),
          tuple(f"{v:.1f}" for v in quantiles),
          caption="decoded codes at the N(0, 1) quantiles 0.05...0.95: z[0] across, z[1] down")
    return layouts
