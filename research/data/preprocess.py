"""Preprocessing ops chosen in the config, run inside the jitted step.

A spec is a ``|``-separated chain of ops with optional literal arguments, e.g.
``"scale(0, 1)|binarize"``. Each op maps ``(batch, rng) -> batch`` with jax.numpy,
so it fuses into the train step; random ops (dynamic binarization) draw from the
step's key, hence are reproducible and resume exactly. Register a new op with
``@register("name")`` on a factory that takes the op's arguments.
"""
import ast
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
  return lambda batch, rng: {**batch, key: shift(batch[key], rng)}


@register("random_flip")
def random_flip(key: str = "image") -> Op:
  """Mirrors each image left-right with probability 1/2: augmentation for training."""
  def flip(images, rng):
    mirrored = jax.random.bernoulli(rng, 0.5, (images.shape[0],) + (1,) * (images.ndim - 1))
    return jnp.where(mirrored, images[:, :, ::-1], images)
  return lambda batch, rng: _map_key(batch, key, lambda x: flip(x, rng))


def _parse_op(text: str) -> tuple[str, tuple, dict]:
  call = ast.parse(text.strip(), mode="eval").body
  if isinstance(call, ast.Name):
    return call.id, (), {}
  if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
    args = tuple(ast.literal_eval(a) for a in call.args)
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    return call.func.id, args, kwargs
  raise errors.ConfigError(f"cannot parse preprocessing op {text!r}")


def compose(*ops: Op) -> Op:
  """One op applying ``ops`` in turn, each with its own key."""
  def apply(batch: dict, rng: jax.Array) -> dict:
    for i, op in enumerate(ops):
      batch = op(batch, jax.random.fold_in(rng, i))
    return batch
  return apply


def parse(spec: str) -> Op:
  """Builds one op from a ``|``-separated spec; the empty spec is the identity."""
  ops = []
  for text in filter(None, (t.strip() for t in spec.split("|"))):
    name, args, kwargs = _parse_op(text)
    if name not in _OPS:
      raise errors.ConfigError(f"unknown preprocessing op {name!r}; known: {', '.join(sorted(_OPS))}")
    ops.append(_OPS[name](*args, **kwargs))
  return compose(*ops)
