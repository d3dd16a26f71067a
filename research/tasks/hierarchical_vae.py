"""VAEs with several stochastic layers (research/models/hierarchical_vae.py: Burda et al.
2016's two-layer model, bottom-up or ladder inference), trained and evaluated as the VAE
task (research/tasks/vae.py) does, every bound from one per-sample log weight:

  log w = log p(x | z[0]) + sum_i [log p(z[i] | z[i + 1]) - log q(z[i] | ...)],
  z ~ q(z | x) drawn layer by layer in the inference network's order

  -ELBO    -mean_k log w_k (an estimate: the KL of a hierarchy has no closed form)
  -IWAE_k  -log mean_k w_k
  NLL      -log mean w over ``evals.nll.num_samples`` (the IWAE paper: 5,000), in chunks

``config.task`` as the VAE's, with objective ``elbo`` (recon + beta * KL, the KL warm-up
too) or ``iwae``; no disentangling objective and no class condition. Metrics, besides the
VAE's (``kl`` being the sum of the layers' Monte Carlo estimates, which can be negative
for one image): ``kl_z1`` ... ``kl_zL``, each layer's share, E_q[log q(z[i] | ...) - log
p(z[i] | z[i + 1])], a layer that the model stopped using reads ~0.

Predictions: ``encode`` (every layer's posterior along the noiseless path, concatenated),
``reconstruct`` (its z[0] decoded), ``elbo``, ``nll``; ``sample`` draws ancestrally from
the top prior down; the ``images`` summaries are reconstructions and samples. No
``regret``: the VAE's fits one Gaussian posterior, and this posterior is a chain of them.
"""
import dataclasses

import jax
import jax.numpy as jnp
from clu import metrics

from research import errors
from research.models import hierarchical_vae
from research.tasks import vae

OBJECTIVES = ("elbo", "iwae")


def layer_kl(z, posterior, prior) -> jnp.ndarray:
  """log q(z) - log p(z) of one layer's samples: its share of -log w."""
  return vae.gaussian_log_prob(z, *posterior) - vae.gaussian_log_prob(z, *prior)


def layer_kls(latents: dict) -> jnp.ndarray:
  """Every layer's ``layer_kl`` of ``latents`` (the model's), stacked: (L, samples, batch)."""
  return jnp.stack([layer_kl(*terms) for terms in
                    zip(latents["z"], latents["posterior"], latents["prior"], strict=True)])


def kl_metric(layer: int) -> str:
  """The metric of layer ``layer``'s (from 0) KL estimate: kl_z1 for the one next to x."""
  return f"kl_z{layer + 1}"


class Task(vae.Task):
  objectives, batch_objectives = OBJECTIVES, ()
  predictions = ("encode", "reconstruct", "elbo", "nll")

  def __init__(self, config):
    super().__init__(config)
    self.latent_dims = tuple(config.model.latent_dims)
    self.metrics = {**self.metrics, **{kl_metric(i): metrics.Average.from_output(kl_metric(i))
                                       for i in range(len(self.latent_dims))}}

  @classmethod
  def validate_config(cls, config):
    require, model = errors.require, config.model
    require(config.task.objective in OBJECTIVES, "task.objective", config.task.objective,
            f"elbo or iwae with task.name={config.task.name}")
    require(model.get("num_classes", 0) == 0, "model.num_classes", model.get("num_classes"),
            "0: the hierarchical VAE is unconditional")
    require(model.get("inference") in hierarchical_vae.INFERENCES, "model.inference",
            model.get("inference"), " or ".join(hierarchical_vae.INFERENCES))
    dims, hidden = tuple(model.get("latent_dims", ())), tuple(model.get("hidden", ()))
    require(len(dims) >= 1 and all(isinstance(d, int) and d > 0 for d in dims),
            "model.latent_dims", dims, "positive sizes of the latent layers, from x up")
    require(len(hidden) == len(dims) and all(len(h) >= 1 for h in hidden), "model.hidden",
            hidden, f"one tuple of layer widths per latent layer ({len(dims)})")
    super().validate_config(config)

  def bottom_up(self, params, model_state, x, rng, train=False):
    return self._apply(params, model_state, "bottom_up", x, rng=rng, train=train)

  def noise(self, rng, batch_size: int, num_samples: int,
            dtype=jnp.float32) -> list[jnp.ndarray]:
    """Standard normal noise of every layer, (num_samples, batch_size, latent_dims[i])."""
    keys = jax.random.split(rng, len(self.latent_dims))
    return [jax.random.normal(key, (num_samples, batch_size, d), dtype)
            for key, d in zip(keys, self.latent_dims)]

  def sample_terms(self, params, model_state, x, evidence, rng, num_samples: int,
                   train=False):
    """-log p(x | z[0]) (num_samples, batch) and ``layer_kls`` (L, num_samples, batch) of
    fresh posterior samples given the bottom-up ``evidence``: log w = -(both summed)."""
    noise_rng, dropout_rng = jax.random.split(rng)
    eps = self.noise(noise_rng, x.shape[0], num_samples, evidence[0][0].dtype)
    latents = self._apply(params, model_state, "latents", evidence, eps, rng=dropout_rng,
                          train=train)
    out = self._apply(params, model_state, "decode", latents["z"][0], rng=dropout_rng,
                      train=train)
    return self.nll_fn(out, x), layer_kls(latents)

  def loss_fn(self, params, model_state, batch, rng, train):
    x = batch["image"]
    encode_rng, sample_rng = jax.random.split(rng)
    evidence = self.bottom_up(params, model_state, x, encode_rng, train)
    recon_nll, kls = self.sample_terms(params, model_state, x, evidence, sample_rng,
                                       self.task.num_samples, train)
    kl_layers = kls.mean(1)  # (L, batch): each layer's estimate, averaged over the samples
    outputs = self.bound_outputs(recon_nll.mean(0), kl_layers.sum(0), -recon_nll - kls.sum(0))
    outputs.update({kl_metric(i): kl for i, kl in enumerate(kl_layers)})
    return self.objective_loss(outputs, model_state, train)

  def importance_log_weights(self, params, model_state, x, condition, rng):
    """The bottom-up pass once, then each chunk's samples of every layer."""
    evidence = self.bottom_up(params, model_state, x, rng)

    def log_weights(key, n):
      recon_nll, kls = self.sample_terms(params, model_state, x, evidence, key, n)
      return -recon_nll - kls.sum(0)

    return log_weights

  def reconstruct(self, params, model_state, batch, rng):
    """The decoded z[0] of the noiseless path (every eps = 0)."""
    latents = self._apply(params, model_state, "noiseless_latents", batch["image"], rng=rng)
    return self.decode_mean(params, model_state, latents["z"][0], None, rng)

  def sample(self, params, model_state, rng, num: int) -> jnp.ndarray:
    """``num`` images drawn ancestrally: z[-1] ~ N(0, I), each lower z[i] from p(z[i] |
    z[i + 1]); shown as p(x | z[0])'s mean."""
    top_rng, noise_rng = jax.random.split(rng)
    z_top = jax.random.normal(top_rng, (num, self.latent_dims[-1]))
    eps = [e[0] for e in self.noise(noise_rng, num, 1)[:-1]]
    out = self._apply(params, model_state, "generate", z_top, eps, rng=rng)
    return self.mean_fn(out)

  def images(self, params, model_state, batch, rng):
    """Reconstructions and prior samples (interpolations and traversals of one Gaussian
    code, the VAE's other grids, have no single code to sweep here)."""
    x = batch["image"]
    recon = self.reconstruct(params, model_state, {"image": x[:vae.reconstructed_images(x)]},
                             rng)
    return {"reconstructions": vae.reconstruction_grid(x, recon),
            "samples": self.sample(params, model_state, rng, vae.NUM_IMAGES)}

  def image_layouts(self) -> dict:
    layouts = super().image_layouts()
    caption = "decoded ancestral draws: z_L from N(0, I), each lower layer from its prior"
    return {"reconstructions": layouts["reconstructions"],
            "samples": dataclasses.replace(layouts["samples"], caption=caption)}
