"""MLP VAE with several stochastic layers: Burda et al. (2016)'s two-layer model and a
ladder (LVAE, Sønderby et al. 2016) variant of its inference network.

Layers count from the pixels: ``z[0]`` (the paper's h1) is next to x, ``z[-1]`` the top.
With ``latent_dims=(100, 50)`` and ``hidden=((200, 200), (100, 100))`` (the IWAE paper's
section 5), each of ``hidden[i]`` being the deterministic layers between layer i's input
(x or z[i - 1]) and z[i]:

  generative  p(z[-1]) = N(0, I),  p(z[i] | z[i + 1]) = N(mu, sigma^2) through
              reversed(hidden[i + 1]),  p(x | z[0]) through reversed(hidden[0])
  bottom_up   q(z[0] | x) q(z[1] | z[0]) ...: each posterior from the sample below it
              (Burda et al.), hidden[i] the layers of q(z[i] | z[i - 1])
  ladder      a deterministic bottom-up pass d[i] = MLP_i(d[i - 1]), d[-1] = x, gives an
              estimate N(mu_hat[i], sigma_hat[i]^2) of every layer from x alone; then, from
              the top down, q(z[i] | z[i + 1], x) is the precision-weighted product of that
              estimate and the generative p(z[i] | z[i + 1]) (the top's with N(0, I))

Every Gaussian is diagonal, its mean and log-variance from one linear layer (the variance
is exp(log-variance), as research/models/vae.py's). At the ladder's top, Sønderby et al.
take the bottom-up estimate as it is; combining it with the prior N(0, I) as every lower
layer is combined with its prior keeps one rule for all layers and limits the top's
posterior variance to below 1 (the prior's).

The model draws no randomness: the task passes standard normal noise ``eps`` (one array
per layer) and the model returns z = mu + sigma eps with the densities of the log weight.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers
from research.models.vae import gaussian_sample, split_posterior

BOTTOM_UP, LADDER = "bottom_up", "ladder"
INFERENCES = (BOTTOM_UP, LADDER)

Gaussian = tuple[jnp.ndarray, jnp.ndarray]  # (mean, log-variance), diagonal


def precision_weighted(a: Gaussian, b: Gaussian) -> Gaussian:
  """N(mean_a, var_a) N(mean_b, var_b) normalised: precisions add and each mean is
  weighted by its share of the precision. Computed in log space (the log-variance is
  -logaddexp of the negative log-variances), so neither precision overflows."""
  (mean_a, log_var_a), (mean_b, log_var_b) = a, b
  log_var = -jnp.logaddexp(-log_var_a, -log_var_b)
  return mean_a * jnp.exp(log_var - log_var_a) + mean_b * jnp.exp(log_var - log_var_b), log_var


def standard_normal(like: jnp.ndarray) -> Gaussian:
  """N(0, I) shaped as ``like``: the top layer's prior."""
  return jnp.zeros_like(like), jnp.zeros_like(like)


class Model(nn.Module):
  """``bottom_up(x)``: what inference reads from x alone; ``latents(evidence, eps)``: every
  layer's sample, posterior and prior; ``decode(z0)``: p(x | z[0])'s parameters;
  ``generate(z_top, eps)``: ancestral sampling down to those parameters; ``encode(x)``: the
  posteriors along the noiseless path (eps = 0), every layer's concatenated."""
  image_shape: Sequence[int]
  latent_dims: Sequence[int] = (100, 50)
  hidden: Sequence[Sequence[int]] = ((200, 200), (100, 100))
  activation: str = "tanh"
  inference: str = BOTTOM_UP
  outputs_per_pixel: int = 1

  def setup(self):
    if len(self.hidden) != len(self.latent_dims) or self.inference not in INFERENCES:
      raise ValueError(f"hidden={self.hidden} needs one tuple of widths per latent layer "
                       f"{self.latent_dims}, and inference one of {INFERENCES}")
    self.up = [layers.MLP(tuple(h), self.activation) for h in self.hidden]
    self.posterior = [layers.Dense(2 * d) for d in self.latent_dims]
    self.down = [layers.MLP(tuple(reversed(h)), self.activation) for h in self.hidden]
    self.prior = [layers.Dense(2 * d) for d in self.latent_dims[:-1]]
    self.likelihood = layers.Dense(math.prod(self.image_shape) * self.outputs_per_pixel)

  @property
  def latent_dim(self) -> int:
    """The size of ``encode``'s code: every layer's latents, concatenated."""
    return sum(self.latent_dims)

  def bottom_up(self, x) -> tuple[Gaussian, ...]:
    """bottom_up: (q(z[0] | x),), the only layer x alone determines; ladder: the bottom-up
    estimate of every layer."""
    h, estimates = layers.flatten(x), []
    for up, posterior in zip(self.up, self.posterior):
      h = up(h)
      estimates.append(split_posterior(posterior(h)))
      if self.inference == BOTTOM_UP:
        break
    return tuple(estimates)

  def conditional_prior(self, i: int, z_above) -> Gaussian:
    """p(z[i] | z[i + 1])."""
    return split_posterior(self.prior[i](self.down[i + 1](z_above)))

  def latents(self, evidence, eps) -> dict:
    """{"z", "posterior", "prior"}: per layer, the sample z[i] = mean + sigma eps[i] of its
    posterior and that posterior's and the prior's (mean, log-variance), the top's prior
    N(0, I). ``eps[i]`` may have leading sample axes, shared by every output."""
    if self.inference == LADDER:
      return self._ladder_latents(evidence, eps)
    posteriors, zs = [evidence[0]], [gaussian_sample(*evidence[0], eps[0])]
    for i in range(1, len(self.latent_dims)):
      posteriors.append(split_posterior(self.posterior[i](self.up[i](zs[-1]))))
      zs.append(gaussian_sample(*posteriors[-1], eps[i]))
    priors = [self.conditional_prior(i, zs[i + 1]) for i in range(len(zs) - 1)]
    return {"z": tuple(zs), "posterior": tuple(posteriors),
            "prior": (*priors, standard_normal(zs[-1]))}

  def _ladder_latents(self, evidence, eps) -> dict:
    """``latents`` from the top down: each posterior combines the layer's bottom-up
    estimate with its prior given the sample above (Sønderby et al.'s eq. 19)."""
    prior = standard_normal(evidence[-1][0])
    zs, posteriors, priors = [], [], []
    for i in reversed(range(len(self.latent_dims))):
      posterior = precision_weighted(evidence[i], prior)
      zs.insert(0, gaussian_sample(*posterior, eps[i]))
      posteriors.insert(0, posterior)
      priors.insert(0, prior)
      if i:
        prior = self.conditional_prior(i - 1, zs[0])
    return {"z": tuple(zs), "posterior": tuple(posteriors), "prior": tuple(priors)}

  def decode(self, z0, condition=None):
    """p(x | z[0])'s parameters, ``z0.shape[:-1] + image_shape + (outputs_per_pixel,)``
    (``condition``: unused, the VAE contract's)."""
    del condition
    out = self.likelihood(self.down[0](z0))
    return out.reshape(z0.shape[:-1] + tuple(self.image_shape) + (self.outputs_per_pixel,))

  def generate(self, z_top, eps):
    """p(x | z[0])'s parameters for the top code ``z_top``, each lower layer drawn from its
    prior with noise ``eps[i]`` (one array per layer below the top)."""
    z = z_top
    for i in reversed(range(len(self.latent_dims) - 1)):
      z = gaussian_sample(*self.conditional_prior(i, z), eps[i])
    return self.decode(z)

  def noiseless_latents(self, x) -> dict:
    """``latents`` along the posterior means (eps = 0)."""
    evidence = self.bottom_up(x)
    eps = [jnp.zeros(x.shape[:1] + (d,), evidence[0][0].dtype) for d in self.latent_dims]
    return self.latents(evidence, eps)

  def encode(self, x, condition=None) -> Gaussian:
    """Every layer's posterior along the noiseless path, concatenated: (batch, latent_dim)
    means and log-variances (``condition``: unused, the VAE contract's)."""
    del condition
    means, log_vars = zip(*self.noiseless_latents(x)["posterior"])
    return jnp.concatenate(means, -1), jnp.concatenate(log_vars, -1)

  def __call__(self, x, condition=None, train: bool = False):
    """The reconstruction of the noiseless path: it reaches every parameter, so that
    ``init`` creates them all."""
    del condition, train
    return self.decode(self.noiseless_latents(x)["z"][0])
