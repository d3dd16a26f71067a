"""Marginal likelihood by importance sampling, in bounded memory.

    log p(x) ~= log (1/K) sum_k w_k,   w_k = p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)

The K samples are drawn in chunks of ``chunk_size``; a ``lax.scan`` over the chunks
keeps a running ``logsumexp`` of the log weights per example, so memory grows with
the chunk, not with K, and the whole estimate is one jitted computation.
"""
from typing import Callable

import jax
import jax.numpy as jnp

# (rng, num_samples) -> log weights of shape (num_samples, batch)
LogWeightsFn = Callable[[jax.Array, int], jnp.ndarray]


def log_mean_exp(log_weights: jnp.ndarray, axis: int = 0) -> jnp.ndarray:
  """log mean exp, stable for any magnitudes: the importance-weighted bound of the samples."""
  return jax.nn.logsumexp(log_weights, axis=axis) - jnp.log(log_weights.shape[axis])


def importance_sampled_log_likelihood(log_weights_fn: LogWeightsFn, rng: jax.Array,
                                      num_samples: int, chunk_size: int) -> jnp.ndarray:
  """log p(x) per example from ``num_samples`` importance samples, ``chunk_size`` at a time.

  ``num_samples`` must be a multiple of ``chunk_size`` (validated with the config).
  """
  if num_samples % chunk_size:
    raise ValueError(f"num_samples={num_samples} is not a multiple of chunk_size={chunk_size}")

  def accumulate(total, key):
    chunk = jax.nn.logsumexp(log_weights_fn(key, chunk_size), axis=0)
    return jnp.logaddexp(total, chunk), None

  keys = jax.random.split(rng, num_samples // chunk_size)
  first = jax.nn.logsumexp(log_weights_fn(keys[0], chunk_size), axis=0)
  total, _ = jax.lax.scan(accumulate, first, keys[1:])
  return total - jnp.log(num_samples)
