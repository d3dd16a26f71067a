"""Latent-space summaries of generative models: codes to decode into image grids
(interpolations, traversals, the 2-D manifold), and the split-level latent report
(active units, per-dimension KL, a scatter of posterior means)."""
import csv
import os

import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from research.evaluation import images

ACTIVE_UNIT_THRESHOLD = 1e-2  # Burda et al. (2016): Cov_x(E_q[z_d]) above this is active


def interpolations(start: jnp.ndarray, end: jnp.ndarray, steps: int) -> jnp.ndarray:
  """Codes on the segments from each ``start`` row to the ``end`` row: (n * steps, dim),
  one row of ``steps`` codes per pair."""
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  return ((1 - t) * start[:, None] + t * end[:, None]).reshape(-1, start.shape[-1])


def traversals(base: jnp.ndarray, steps: int, extent: float) -> jnp.ndarray:
  """``base`` with one latent at a time swept over [-extent, extent]: (dim * steps, dim),
  one row of ``steps`` codes per latent dimension."""
  dim = base.shape[-1]
  values = jnp.linspace(-extent, extent, steps)
  codes = jnp.broadcast_to(base, (dim, steps, dim))
  index = jnp.arange(dim)
  return codes.at[index, :, index].set(values).reshape(-1, dim)


def manifold(steps: int) -> jnp.ndarray:
  """A steps x steps grid of 2-D codes at evenly spaced quantiles of N(0, 1)."""
  values = jstats.norm.ppf(jnp.linspace(0.05, 0.95, steps))
  y, x = jnp.meshgrid(values[::-1], values, indexing="ij")
  return jnp.stack([x, y], axis=-1).reshape(-1, 2)


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD):
  """Per-dimension variance over the data of E_q[z] and the number above ``threshold``."""
  variance = np.var(np.asarray(posterior_means, np.float64), axis=0)
  return variance, int(np.sum(variance > threshold))


def latent_report(posterior_means, kl_per_dim, labels, directory: str | None,
                  prefix: str) -> dict[str, float]:
  """Active units and mean KL per dimension over a split; in ``directory`` (when given) a
  csv per dimension and, for 2-D latents, a scatter of posterior means by label."""
  variance, num_active = active_units(posterior_means)
  kl = np.mean(np.asarray(kl_per_dim, np.float64), axis=0)
  if directory is not None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{prefix}_latents.csv"), "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["dim", "kl", "posterior_mean_variance", "active"])
      for d, (k, v) in enumerate(zip(kl, variance)):
        writer.writerow([d, f"{k:.6g}", f"{v:.6g}", int(v > ACTIVE_UNIT_THRESHOLD)])
    if posterior_means.shape[-1] == 2:
      images.save_scatter(os.path.join(directory, f"{prefix}_latent_scatter.png"),
                          np.asarray(posterior_means), labels)
  return {"active_units": float(num_active), "kl_max_dim": float(kl.max())}
