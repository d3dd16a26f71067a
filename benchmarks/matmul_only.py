"""The matmul-only limit of a jitted function: its dots (and convolutions), with the same
shapes, dtypes and dimension numbers, timed alone on the same devices.

A function cannot run faster than its own matrix products; how close it comes to them says
how much time the element-wise work, the random bits, reductions and data movement take.
This is a model's own roofline, unlike a large square matmul's FLOP/s.

    limit = matmul_only_seconds(fn, *args)      # seconds per call of fn(*args)

The function is traced to a jaxpr; every ``dot_general`` and ``conv_general_dilated``
equation is collected, inside jit, custom-derivative and remat calls, ``cond`` (its
costliest branch) and ``scan`` (times its length). Each distinct product runs alone in a
``fori_loop`` on random operands; an ``optimization_barrier`` around its operands and
result keeps XLA from hoisting it out of the loop or computing only the part that is read.
The limit is the sum over products of their count times their time.
"""
import collections
import dataclasses
import statistics
import time
from typing import Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np

PRODUCTS = ("dot_general", "conv_general_dilated")


@dataclasses.dataclass(frozen=True)
class Product:
  """One matrix product of a jaxpr: the primitive, its operands' shapes and dtypes, and its
  parameters (hashable: equal products are timed once)."""
  primitive: object
  operands: tuple[jax.ShapeDtypeStruct, ...]
  params: tuple

  @property
  def flops(self) -> float:
    out = jax.eval_shape(lambda *ops: self.bind(*ops), *self.operands)
    if self.primitive.name == "dot_general":
      (lhs_contracting, _), _ = dict(self.params)["dimension_numbers"]
      contracted = np.prod([self.operands[0].shape[d] for d in lhs_contracting])
    else:  # a convolution: each output sums its kernel window over a group's input features
      rhs = self.operands[1]
      out_features_dim = dict(self.params)["dimension_numbers"].rhs_spec[0]
      contracted = np.prod(rhs.shape) / rhs.shape[out_features_dim]
    return 2.0 * float(np.prod(out.shape)) * float(contracted)

  def bind(self, *operands):
    return self.primitive.bind(*operands, **dict(self.params))


def _closed(jaxpr):
  return jaxpr.jaxpr if isinstance(jaxpr, jex.core.ClosedJaxpr) else jaxpr


def _product_flops(counts: collections.Counter) -> float:
  return sum(product.flops * count for product, count in counts.items())


def products_of(jaxpr, multiplicity: int = 1, counts: collections.Counter | None = None):
  """``Counter`` of the ``Product``s one evaluation of ``jaxpr`` runs."""
  counts = collections.Counter() if counts is None else counts
  for eqn in _closed(jaxpr).eqns:
    name = eqn.primitive.name
    if name in PRODUCTS:
      operands = tuple(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars)
      counts[Product(eqn.primitive, operands, tuple(sorted(eqn.params.items())))] += multiplicity
    elif name == "while":
      raise ValueError("a while loop's trip count is unknown: the matmul-only limit needs scans "
                       "(or fori_loops with static bounds, which JAX lowers to scans)")
    elif name == "cond":
      branches = [products_of(branch) for branch in eqn.params["branches"]]
      for product, count in max(branches, key=_product_flops).items():
        counts[product] += count * multiplicity
    else:
      inner = multiplicity * (eqn.params["length"] if name == "scan" else 1)
      for sub in jex.core.jaxprs_in_params(eqn.params):
        products_of(sub, inner, counts)
  return counts


def _random_operand(spec: jax.ShapeDtypeStruct, key) -> jax.Array:
  if jnp.issubdtype(spec.dtype, jnp.floating):
    return jax.random.normal(key, spec.shape, jnp.float32).astype(spec.dtype)
  return jnp.ones(spec.shape, spec.dtype)


def _repeated(product: Product) -> Callable:
  """``(operands, reps) -> scalar``: the product run ``reps`` times, never hoisted."""

  def run(operands, reps):
    def body(_, carry):
      operands, total = carry
      operands = jax.lax.optimization_barrier(operands)
      out = jax.lax.optimization_barrier(product.bind(*operands))
      return operands, total + out.ravel()[0].astype(jnp.float32)

    return jax.lax.fori_loop(0, reps, body, (operands, jnp.float32(0)))[1]

  return jax.jit(run, static_argnums=1)


def product_seconds(product: Product, min_seconds: float = 0.05, repeats: int = 3) -> float:
  """Median seconds of one evaluation of ``product``, from loops of at least
  ``min_seconds``."""
  keys = jax.random.split(jax.random.PRNGKey(0), len(product.operands))
  operands = tuple(_random_operand(spec, key) for spec, key in zip(product.operands, keys))
  run = _repeated(product)
  reps = 1
  while True:
    run(operands, reps).block_until_ready()  # compiles this loop length
    start = time.perf_counter()
    run(operands, reps).block_until_ready()
    seconds = time.perf_counter() - start
    if seconds >= min_seconds:
      break
    reps = max(2 * reps, int(reps * 1.2 * min_seconds / max(seconds, 1e-6)))
  times = [seconds]
  for _ in range(repeats - 1):
    start = time.perf_counter()
    run(operands, reps).block_until_ready()
    times.append(time.perf_counter() - start)
  return statistics.median(times) / reps


@dataclasses.dataclass(frozen=True)
class Limit:
  seconds: float  # per call of the function: sum over products of count x seconds
  flops: float  # the products' FLOPs per call
  products: int  # distinct products
  evaluations: int  # products evaluated per call


def matmul_only(fn: Callable, *args, min_seconds: float = 0.05) -> Limit:
  """The matmul-only limit of one call ``fn(*args)`` (``fn`` jitted or not)."""
  counts = products_of(jax.make_jaxpr(fn)(*args))
  seconds = sum(count * product_seconds(product, min_seconds)
                for product, count in counts.items())
  return Limit(seconds, _product_flops(counts), len(counts), sum(counts.values()))
