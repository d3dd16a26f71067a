"""Decoder likelihoods p(x|z) over images, chosen by ``config.task.likelihood``.

The decoder emits ``(..., H, W, C, P)`` parameters per pixel, where ``P`` is
``OUTPUTS_PER_PIXEL[name]``. Each likelihood gives
  - ``nll(params, x)``: -log p(x|z) in nats per image (summed over pixels);
  - ``mean(params)``: the image the parameters describe, in [0, 1], for summaries.

``bernoulli`` is for binarized images; ``logistic`` (discretized logistic, as in
PixelCNN++) and ``categorical`` (256-way softmax) are proper likelihoods for 8-bit
grey levels ``x = k / 255``, so their nats are comparable with published numbers.
``gaussian`` (mean and log-variance per input) is a density over continuous inputs, e.g.
another model's latent codes (M1+M2, research/tasks/m1m2.py); its ``mean`` is not in [0, 1].
"""
import math

import jax
import jax.numpy as jnp
import optax

NUM_LEVELS = 256
OUTPUTS_PER_PIXEL = {"bernoulli": 1, "logistic": 2, "categorical": NUM_LEVELS, "gaussian": 2}
MIN_LOG_SCALE = -7.0


def _flat_pixels(params: jnp.ndarray, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """``params`` (leading axes, x's image axes, P) as (leading axes, pixels, P) and ``x``
  (batch, image axes) as (batch, pixels): XLA:CPU's element-wise work and sums over one
  contiguous pixel axis run several times faster than over (H, W, C)."""
  image_ndim = x.ndim - 1
  leading = params.shape[:params.ndim - 1 - image_ndim]
  return params.reshape(leading + (-1, params.shape[-1])), x.reshape(x.shape[:1] + (-1,))


@jax.custom_jvp
def softplus(x: jnp.ndarray) -> jnp.ndarray:
  """log(1 + exp(x)) as ``max(x, 0) + log1p(exp(-|x|))``, with sigmoid(x) as its derivative
  (also at 0, where that form's kinks would give 0): the same values as ``jax.nn.softplus``
  for finite x without its ``logaddexp``'s NaN and infinity branches, which make it the
  costliest element-wise op of a decoder's output on CPU."""
  return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return softplus(x), jax.nn.sigmoid(x) * dx


def bernoulli_nll(params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """-log p(x) of Bernoulli pixels with logits ``params[..., 0]``: ``softplus(l) - x l``,
  equal to the cross-entropy ``-x log sigmoid(l) - (1 - x) log sigmoid(-l)`` with one
  softplus instead of two (the decoder's output is the largest element-wise term)."""
  params, x = _flat_pixels(params, x)
  logits = params[..., 0]
  return jnp.sum(softplus(logits) - x * logits, axis=-1)


def bernoulli_mean(params: jnp.ndarray) -> jnp.ndarray:
  return jax.nn.sigmoid(params[..., 0])


def discretized_logistic_log_prob(x: jnp.ndarray, loc: jnp.ndarray,
                                  log_scale: jnp.ndarray) -> jnp.ndarray:
  """log P(x) of a logistic discretized to the 256 bins of width 1/255 centred on x in
  [0, 1]; the edge bins extend to -inf and +inf, so the 256 probabilities sum to 1."""
  log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE)
  inv_scale = jnp.exp(-log_scale)
  half_bin = 0.5 / (NUM_LEVELS - 1)
  centered = x - loc
  plus, minus = inv_scale * (centered + half_bin), inv_scale * (centered - half_bin)
  log_cdf_plus = plus - jax.nn.softplus(plus)  # log sigmoid(plus): the lowest bin
  log_sf_minus = -jax.nn.softplus(minus)  # log (1 - sigmoid(minus)): the highest bin
  # log(sigmoid(plus) - sigmoid(minus)), stable: sigmoid(a) - sigmoid(b) =
  # sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)).
  log_delta = (jax.nn.log_sigmoid(plus) + jax.nn.log_sigmoid(-minus)
               + jnp.log(-jnp.expm1(minus - plus)))
  return jnp.where(x < half_bin, log_cdf_plus,
                   jnp.where(x > 1.0 - half_bin, log_sf_minus, log_delta))


def logistic_nll(params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  params, x = _flat_pixels(params, x)
  return -jnp.sum(discretized_logistic_log_prob(x, params[..., 0], params[..., 1]), axis=-1)


def logistic_mean(params: jnp.ndarray) -> jnp.ndarray:
  return jnp.clip(params[..., 0], 0.0, 1.0)


def categorical_nll(params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  params, x = _flat_pixels(params, x)
  levels = jnp.round(x * (NUM_LEVELS - 1)).astype(jnp.int32)
  levels = jnp.broadcast_to(levels, params.shape[:-1])
  return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(params, levels), axis=-1)


def categorical_mean(params: jnp.ndarray) -> jnp.ndarray:
  levels = jnp.arange(NUM_LEVELS, dtype=params.dtype) / (NUM_LEVELS - 1)
  return jax.nn.softmax(params, axis=-1) @ levels


def gaussian_log_density(x: jnp.ndarray, mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """log N(x; mean, exp(log_var)) of each element."""
  return -0.5 * (math.log(2 * math.pi) + log_var + jnp.square(x - mean) * jnp.exp(-log_var))


def gaussian_nll(params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """-log N(x; params[..., 0], exp(params[..., 1])) summed over the input's elements."""
  params, x = _flat_pixels(params, x)
  return -jnp.sum(gaussian_log_density(x, params[..., 0], params[..., 1]), axis=-1)


def gaussian_mean(params: jnp.ndarray) -> jnp.ndarray:
  return params[..., 0]


NLL = {"bernoulli": bernoulli_nll, "logistic": logistic_nll, "categorical": categorical_nll,
       "gaussian": gaussian_nll}
MEAN = {"bernoulli": bernoulli_mean, "logistic": logistic_mean, "categorical": categorical_mean,
        "gaussian": gaussian_mean}


def bits_per_dim(nats: jnp.ndarray, image_shape) -> jnp.ndarray:
  """Nats per image as bits per pixel value."""
  return nats / (math.prod(image_shape) * math.log(2.0))
