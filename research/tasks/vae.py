"""Variational autoencoders: the ELBO (optionally beta-weighted, with a KL warm-up),
the importance-weighted bound (IWAE), class-conditional models (CVAE), and the
test log-likelihood by importance sampling. All terms are in nats per image.

  -ELBO(x)   = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))
  -IWAE_k(x) = -E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_i ~ q(z|x)

``config.task``:
  likelihood     bernoulli (binarized images), logistic or categorical (8-bit grey
                 levels; see research/tasks/likelihoods.py)
  objective      elbo: minimise recon + beta_t * KL; iwae: minimise -IWAE_k
  num_samples    k, posterior samples per image in training and in the bound
  beta           weight of the KL term (elbo); 1 is the ELBO
  kl_warmup_steps  beta_t rises linearly from 0 to beta over these steps (0: off)
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
from research.tasks import base, likelihoods

NUM_IMAGES = 64  # images per summary grid
COLUMNS = 8  # images per grid row: interpolation and traversal steps
TRAVERSAL_RANGE = 3.0  # traversals sweep each latent over [-3, 3]
WARMUP = "kl_warmup"  # model_state collection that counts training steps for the warm-up


def gaussian_kl(mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(log_var)) || N(0, I)) per dimension, in closed form."""
  return 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)


def gaussian_log_prob(z: jnp.ndarray, mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """log N(z; mean, exp(log_var)) summed over the last axis."""
  return -0.5 * jnp.sum(math.log(2 * math.pi) + log_var + jnp.square(z - mean) * jnp.exp(-log_var),
                        axis=-1)


def reparameterize(rng, mean, log_var, num_samples: int) -> jnp.ndarray:
  """``num_samples`` draws of z ~ q(z|x), shaped (num_samples,) + mean.shape."""
  eps = jax.random.normal(rng, (num_samples,) + mean.shape, mean.dtype)
  return mean + jnp.exp(0.5 * log_var) * eps


def kl_weight(beta: float, warmup_steps: int, step) -> jnp.ndarray:
  """beta, reached linearly over ``warmup_steps`` training steps (at once when 0)."""
  if warmup_steps <= 0:
    return jnp.asarray(beta, jnp.float32)
  return beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


class Task(base.BaseTask):
  """Predictions, per image: ``encode`` (posterior mean and log-variance), ``reconstruct``
  (the decoded posterior mean), ``elbo`` (one posterior sample, nats), ``nll`` (-log p(x)
  by importance sampling with ``num_samples`` from q(z|x), ``chunk`` at a time); and
  ``sample`` from the prior."""
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

  def __init__(self, config):
    super().__init__(config)
    self.task = config.task
    self.nll_fn = likelihoods.NLL[config.task.likelihood]
    self.mean_fn = likelihoods.MEAN[config.task.likelihood]
    self.num_classes = config.model.get("num_classes", 0)
    self.image_shape = tuple(config.model.image_shape)
    self.model = self.model.clone(
        outputs_per_pixel=likelihoods.OUTPUTS_PER_PIXEL[config.task.likelihood])

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
    binarized = "binarize" in config.data.preprocess
    require(binarized == (task.likelihood == "bernoulli"), "task.likelihood", task.likelihood,
            "bernoulli for binarized images (data.preprocess with binarize), logistic or "
            "categorical for grey levels")
    require(task.objective in ("elbo", "iwae"), "task.objective", task.objective, "elbo or iwae")
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
    out = self._apply(params, model_state, "decode", z, condition, rng=dropout_rng, train=train)
    recon_nll = self.nll_fn(out, x)
    zeros = jnp.zeros_like(mean)
    log_w = -recon_nll + gaussian_log_prob(z, zeros, zeros) - gaussian_log_prob(z, mean, log_var)
    return recon_nll, log_w

  def loss_fn(self, params, model_state, batch, rng, train):
    x, condition = batch["image"], self.condition(batch)
    encode_rng, sample_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=encode_rng,
                                train=train)
    recon_nll, log_w = self.log_weights(params, model_state, x, condition, mean, log_var,
                                        sample_rng, self.task.num_samples, train)
    recon_nll, kl = recon_nll.mean(0), gaussian_kl(mean, log_var).sum(-1)
    neg_elbo, neg_bound = recon_nll + kl, -likelihood.log_mean_exp(log_w)
    if self.task.objective == "iwae":
      loss = jnp.mean(neg_bound)
    else:
      step = model_state[WARMUP]["step"] if WARMUP in model_state else None
      beta = kl_weight(self.task.beta, self.task.kl_warmup_steps, step)
      loss = jnp.mean(recon_nll + beta * kl)
    if train and WARMUP in model_state:
      model_state = {**model_state, WARMUP: {"step": model_state[WARMUP]["step"] + 1}}
    outputs = {"neg_elbo": neg_elbo, "recon_nll": recon_nll, "kl": kl, "neg_bound": neg_bound,
               "bits_per_dim": likelihoods.bits_per_dim(neg_elbo, self.image_shape)}
    return loss, (outputs, model_state)

  def test_log_likelihood(self, params, model_state, batch, rng, num_samples: int, chunk: int):
    """log p(x) per image by importance sampling with q(z|x) as the proposal."""
    x, condition = batch["image"], self.condition(batch)
    encode_rng, sample_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "encode", x, condition, rng=encode_rng)
    log_weights_fn = lambda key, n: self.log_weights(  # noqa: E731
        params, model_state, x, condition, mean, log_var, key, n)[1]
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
    half = min(NUM_IMAGES // 2, x.shape[0] // COLUMNS * COLUMNS)  # whole rows
    recon = decode(mean[:half], None if condition is None else condition[:half])
    pairs = jnp.stack([x[:half].reshape((-1, COLUMNS) + x.shape[1:]),  # a row of inputs, then
                       recon.reshape((-1, COLUMNS) + x.shape[1:])], axis=1)  # their reconstructions
    num_samples = self.num_summary_samples()
    grids = {
        "reconstructions": pairs.reshape((-1,) + x.shape[1:]),
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
