"""The contracts the model files meet, as ``typing.Protocol`` classes: what a task may call.

A model file defines a Flax Linen module named ``Model`` (``config.model.name`` picks the
file); its fields are the config's ``model.*`` entries. The tasks never look at a model's
layers, only at the methods and attributes below, so any module that has them plugs in:

- ``Classifier`` (linear, mlp, cnn, resnet, rnn, vit, text_transformer, random_features):
  logits for a batch, and its penultimate representation sown as ``FEATURES``.
- ``VAE`` (vae, conv_vae): a Gaussian encoder and a decoder of likelihood parameters.
- ``OneClass`` (gaussian, autoencoder, transformations) and ``CentredEmbedding``
  (deep_svdd): a per-example anomaly score.

The protocols are ``runtime_checkable``: ``isinstance(model, Classifier)`` checks that the
attributes and methods exist (not their signatures or shapes; the tests do that).
"""
from typing import Protocol, Sequence, runtime_checkable

import jax.numpy as jnp

FEATURES = ("intermediates", "features")
"""(collection, name) under which a classifier sows its penultimate representation:
``module.sow(*FEATURES, h)``. Read it back with
``logits, state = model.apply(variables, x, mutable=[FEATURES[0]])`` and
``state[FEATURES[0]][FEATURES[1]][0]`` (or ``sown_features(state)``): Flax's ``sow``
appends to a tuple, which holds one array per call of the model in that ``apply``."""


@runtime_checkable
class Classifier(Protocol):
  """A Flax Linen module mapping a batch of inputs to class logits.

  ``model(*inputs, train=False) -> logits`` of shape ``(batch, num_classes)``, where
  ``inputs`` is the image batch ``(batch, height, width, channels)`` for image models, or
  ``tokens, lengths`` (``(batch, length)`` int ids and ``(batch,)`` valid lengths) for
  text models (``rnn`` with ``vocab_size > 0``, ``text_transformer``). ``train=True``
  turns on dropout (the ``dropout`` rng) and batch-norm statistics updates
  (``mutable=["batch_stats"]``).

  Its penultimate representation ``h`` of shape ``(batch, width)``, the input of the
  final dense layer (so ``logits == h @ kernel + bias`` with that layer's parameters), is
  sown as ``self.sow("intermediates", "features", h)`` (``FEATURES``;
  ``layers.classifier_head`` does both). This costs nothing in ordinary use: ``sow`` is a
  no-op unless the ``intermediates`` collection is mutable, and ``Module.init`` leaves it
  out by default, so neither the variables nor the compiled step change. A task that wants
  the features (embeddings, linear probes, nearest neighbours) applies the model with
  ``mutable=["intermediates"]`` and reads ``sown_features(state)``.

  Attributes:
    num_classes: the number of logits per example.
  """
  num_classes: int

  def __call__(self, *inputs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    ...


@runtime_checkable
class VAE(Protocol):
  """A Flax Linen variational autoencoder over images, optionally class-conditional.

  ``encode(x, condition=None) -> (mean, log_var)``: the Gaussian posterior q(z|x) of
  images ``x`` ``(batch,) + image_shape``, each of shape ``(batch, latent_dim)``.

  ``decode(z, condition=None) -> params``: likelihood parameters for p(x|z) of shape
  ``z.shape[:-1] + image_shape + (outputs_per_pixel,)``; ``z`` may have extra leading axes
  (e.g. ``(samples, batch, latent_dim)``). The task turns them into the ELBO (e.g. one
  Bernoulli logit per pixel, or a mean and a scale).

  ``model(x, condition=None, train=False)`` encodes and decodes the posterior mean; it
  exists only so that ``model.init`` creates every parameter (and makes a placeholder
  condition when ``num_classes > 0``). Tasks call ``encode``/``decode`` through
  ``model.apply(..., method="encode")``.

  ``condition`` is a one-hot ``(batch, num_classes)`` label appended to the encoder's
  input and to the latent code (broadcast over ``z``'s leading axes); None when the model
  is unconditional.

  Attributes:
    latent_dim: the size of the latent code z.
    image_shape: ``(height, width, channels)`` of one image.
    outputs_per_pixel: likelihood parameters per pixel (trailing axis of ``decode``).
    num_classes: the size of the one-hot condition; 0 for an unconditional VAE.
  """
  latent_dim: int
  image_shape: Sequence[int]
  outputs_per_pixel: int
  num_classes: int

  def encode(self, x: jnp.ndarray,
             condition: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    ...

  def decode(self, z: jnp.ndarray, condition: jnp.ndarray | None = None) -> jnp.ndarray:
    ...

  def __call__(self, x: jnp.ndarray, condition: jnp.ndarray | None = None,
               train: bool = False) -> jnp.ndarray:
    ...


def sown_features(state) -> jnp.ndarray:
  """The penultimate representation a classifier sowed in ``state`` (the collections
  returned by ``model.apply(..., mutable=["intermediates"])``): its last call's."""
  collection, name = FEATURES
  return state[collection][name][-1]


@runtime_checkable
class OneClass(Protocol):
  """A Flax Linen module mapping a batch of inputs to a per-example anomaly score (the
  one_class task: its loss is the mean score, so normal data should score low), e.g. a
  negative log-likelihood (gaussian) or a reconstruction error (autoencoder).

  ``model(*inputs, train=False) -> scores`` of shape ``(batch,)``.
  """

  def __call__(self, *inputs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    ...


@runtime_checkable
class CentredEmbedding(OneClass, Protocol):
  """A one-class model whose score is the distance of an embedding to a centre set from
  the training data before the first step (deep_svdd; the one_class task calls it).

  ``embed(x) -> (batch, latent_dim)`` in evaluation mode;
  ``set_centre(model_state, mean_embedding) -> model_state`` with the centre placed from
  the training split's mean embedding.
  """

  def embed(self, *inputs: jnp.ndarray) -> jnp.ndarray:
    ...

  def set_centre(self, model_state: dict, mean_embedding: jnp.ndarray) -> dict:
    ...
