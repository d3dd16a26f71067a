"""Preprocessing ops chosen in the config, run inside the jitted step.

A spec is a ``|``-separated chain of ops with optional literal arguments, e.g.
``"scale(0, 1)|binarize"``. Each op maps ``(batch, rng) -> batch`` with jax.numpy,
so it fuses into the train step; random ops (dynamic binarization) draw from the
step's key, hence are reproducible and resume exactly. Register a new op with
``@register("name")`` on a factory that takes the op's arguments.
"""
import ast
import inspect
from typing import Callable

import jax
import jax.numpy as jnp

from research import errors

Op = Callable[[dict, jax.Array], dict]
_OPS: dict[str, Callable[..., Op]] = {}


def register(name: str):
  def decorator(factory):
    _OPS[name] = factory
    return factory
  return decorator


def _map_key(batch: dict, key: str, fn) -> dict:
  if key not in batch:  # data whose features validation could not know (text, tabular)
    raise errors.ConfigError(f"preprocessing key={key!r} is not a feature of the batch; it must "
                             f"be one of {tuple(batch)}")
  return {**batch, key: fn(batch[key])}


@register("scale")
def scale(low: float = 0.0, high: float = 1.0, key: str = "image") -> Op:
  """Maps uint8 pixel values [0, 255] linearly to [low, high] (float32)."""
  return lambda batch, rng: _map_key(
      batch, key, lambda x: low + x.astype(jnp.float32) * ((high - low) / 255.0))


@register("normalize")
def normalize(mean: float, std: float, key: str = "image") -> Op:
  return lambda batch, rng: _map_key(batch, key, lambda x: (x - mean) / std)


@register("binarize")
def binarize(key: str = "image") -> Op:
  """Dynamic binarization: each pixel in [0, 1] becomes 1 with that probability."""
  return lambda batch, rng: _map_key(
      batch, key, lambda x: (jax.random.uniform(rng, x.shape) < x).astype(jnp.float32))


@register("sum_channels")
def sum_channels(key: str = "image") -> Op:
  """(N, H, W, C) -> (N, H, W, 1), the sum over channels: e.g. Colored MNIST's grey-scale
  model, which cannot see the colour (Arjovsky et al. 2019's oracle)."""
  return lambda batch, rng: _map_key(batch, key, lambda x: jnp.sum(x, -1, keepdims=True))


@register("random_shift")
def random_shift(max_pixels: int, key: str = "image") -> Op:
  """Translates each image by up to ``max_pixels`` in each direction, filling with zeros
  (a random crop of the zero-padded image): augmentation for training."""
  def shift(images, rng):
    n, h, w = images.shape[:3]
    pad = [(0, 0), (max_pixels, max_pixels), (max_pixels, max_pixels)] + [(0, 0)] * (images.ndim - 3)
    padded = jnp.pad(images, pad)
    offsets = jax.random.randint(rng, (n, 2), 0, 2 * max_pixels + 1)
    crop = lambda image, offset: jax.lax.dynamic_slice(
        image, (offset[0], offset[1]) + (0,) * (image.ndim - 2), (h, w) + image.shape[2:])
    return jax.vmap(crop)(padded, offsets)
  return lambda batch, rng: _map_key(batch, key, lambda x: shift(x, rng))


@register("random_flip")
def random_flip(key: str = "image") -> Op:
  """Mirrors each image left-right with probability 1/2: augmentation for training."""
  def flip(images, rng):
    mirrored = jax.random.bernoulli(rng, 0.5, (images.shape[0],) + (1,) * (images.ndim - 1))
    return jnp.where(mirrored, images[:, :, ::-1], images)
  return lambda batch, rng: _map_key(batch, key, lambda x: flip(x, rng))


@register("random_pixels")
def random_pixels(rate: float, levels: int = 256, key: str = "image") -> Op:
  """Replaces each pixel with probability ``rate`` by a level drawn uniformly from
  ``levels`` evenly spaced values in [0, 1] (2: a random bit, for binarized images; 256: a
  grey level k / 255): the perturbation that trains the background model of a likelihood
  ratio (Ren et al. 2019, "Likelihood ratios for out-of-distribution detection"). For
  images in [0, 1], i.e. after ``scale(0, 1)`` (and ``binarize``); training augmentation."""
  def perturb(images, rng):
    replace_rng, level_rng = jax.random.split(rng)
    replaced = jax.random.bernoulli(replace_rng, rate, images.shape)
    values = jax.random.randint(level_rng, images.shape, 0, levels) / (levels - 1)
    return jnp.where(replaced, values.astype(images.dtype), images)
  return lambda batch, rng: _map_key(batch, key, lambda x: perturb(x, rng))


@register("flip_vertical")
def flip_vertical(key: str = "image") -> Op:
  """Mirrors every image top-bottom (deterministic): e.g. a shifted copy of a split."""
  return lambda batch, rng: _map_key(batch, key, lambda x: x[:, ::-1])


@register("flip_horizontal")
def flip_horizontal(key: str = "image") -> Op:
  """Mirrors every image left-right (deterministic; ``random_flip`` is the augmentation)."""
  return lambda batch, rng: _map_key(batch, key, lambda x: x[:, :, ::-1])


def _parse_op(text: str) -> tuple[str, tuple, dict]:
  try:
    call = ast.parse(text.strip(), mode="eval").body
    if isinstance(call, ast.Name):
      return call.id, (), {}
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and all(
        k.arg for k in call.keywords):
      args = tuple(ast.literal_eval(a) for a in call.args)
      kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
      return call.func.id, args, kwargs
  except (SyntaxError, ValueError):
    pass
  raise errors.ConfigError(f"cannot parse preprocessing op {text!r}: it must be NAME or "
                           f"NAME(ARGS) with literal arguments, e.g. scale(0, 1)")


def _bind(name: str, text: str, args: tuple, kwargs: dict) -> inspect.BoundArguments:
  """The op's arguments bound to its factory's parameters, defaults filled in."""
  signature = inspect.signature(_OPS[name]).replace(return_annotation=inspect.Signature.empty)
  try:
    bound = signature.bind(*args, **kwargs)
  except TypeError as e:
    raise errors.ConfigError(f"preprocessing op {text!r} does not fit {name}{signature}: "
                             f"{e}") from None
  bound.apply_defaults()
  return bound


def compose(*ops: Op) -> Op:
  """One op applying ``ops`` in turn, each with its own key."""
  def apply(batch: dict, rng: jax.Array) -> dict:
    for i, op in enumerate(ops):
      batch = op(batch, jax.random.fold_in(rng, i))
    return batch
  return apply


def parse(spec: str, features: tuple[str, ...] | None = None) -> Op:
  """Builds one op from a ``|``-separated spec; the empty spec is the identity. Each op's
  arguments must fit its parameters and, when the batch's ``features`` are known, its
  ``key`` must be one of them."""
  ops = []
  for text in filter(None, (t.strip() for t in spec.split("|"))):
    name, args, kwargs = _parse_op(text)
    if name not in _OPS:
      raise errors.ConfigError(f"unknown preprocessing op {name!r}; known: {', '.join(sorted(_OPS))}")
    bound = _bind(name, text, args, kwargs)
    key = bound.arguments.get("key")
    if features is not None and key is not None and key not in features:
      raise errors.ConfigError(f"preprocessing op {name}: key={key!r} is not a feature of the "
                               f"data; it must be one of data.features {tuple(features)}")
    ops.append(_OPS[name](*bound.args, **bound.kwargs))
  return compose(*ops)


from research.data import corruptions  # noqa: E402,F401  registers corrupt(NAME): MNIST-C
