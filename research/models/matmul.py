"""The matmuls of dense layers and im2col convolutions, and their bfloat16 versions on CPUs.

``config.matmul_precision="bfloat16"`` runs the model under
``jax.default_matmul_precision("bfloat16")``: matmul operands rounded to bfloat16, products
accumulated in float32, everything else (parameters, activations, element-wise ops,
optimizer) float32. GPUs and TPUs honour that precision in every dot themselves. XLA:CPU
ignores it, so ``layers.Dense`` and ``layers.Conv`` (im2col) implement it here
(``bfloat16_matmuls``): on CPUs with AMX or AVX512-BF16 a bfloat16 matmul runs 2-5x faster
than a float32 one (benchmarks/RESULTS.md).

Two things keep XLA:CPU on its fast bfloat16 matmul: every product has a plain
``(M, K) x (K, N)`` or ``(M, K) x (N, K)`` layout, because XLA:CPU runs a bfloat16 dot
that contracts its first operand's rows (a weight gradient ``x^T g``) in float32 after
converting both operands; so a dense layer's ``x^T`` is materialized first
(``_transposed``) and a convolution's kernel gradient multiplies patches gathered already
transposed (``im2col_transposed``). And data movement on bfloat16 values (patch gathers,
transposes) runs on their bits as uint16, because XLA:CPU converts every bfloat16 slice
and concatenation to float32 and back.
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

BFLOAT16 = jnp.bfloat16


def bfloat16_matmuls() -> bool:
  """Whether this trace asks for bfloat16 matmuls (``jax.default_matmul_precision``) on
  XLA:CPU, where the layers must implement them."""
  return (jax.config.jax_default_matmul_precision == "bfloat16"
          and jax.default_backend() == "cpu")


def _padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
  """(low pad, high pad, output size) along one spatial axis, as XLA pads SAME and VALID."""
  if padding == "VALID":
    return 0, 0, (size - kernel) // stride + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2, out


def _shifted_slices(x: jnp.ndarray, kernel_size: Sequence[int], strides: Sequence[int],
                    padding: str, channel_axis: int) -> jnp.ndarray:
  """The shifted (strided) slices of the padded images ``x``, one per kernel position,
  concatenated along ``channel_axis``: ``(N, H, W, C)`` images with ``channel_axis=-1``, or
  ``(C, N, H, W)`` with ``channel_axis=0``."""
  h_axis = 1 if channel_axis == -1 else 2
  (lo_h, hi_h, out_h), (lo_w, hi_w, out_w) = (
      _padding(x.shape[axis], k, s, padding)
      for axis, k, s in zip((h_axis, h_axis + 1), kernel_size, strides))
  pads = [(0, 0)] * 4
  pads[h_axis], pads[h_axis + 1] = (lo_h, hi_h), (lo_w, hi_w)
  x = jnp.pad(x, pads)
  (kh, kw), (sh, sw) = kernel_size, strides
  leading = (slice(None),) * h_axis
  shifted = [x[leading + (slice(i, i + sh * (out_h - 1) + 1, sh),
                          slice(j, j + sw * (out_w - 1) + 1, sw))]
             for i in range(kh) for j in range(kw)]
  return shifted[0] if len(shifted) == 1 else jnp.concatenate(shifted, axis=channel_axis)


def im2col(x: jnp.ndarray, kernel_size: Sequence[int], strides: Sequence[int],
           padding: str) -> jnp.ndarray:
  """The patches a convolution sees, ``(N, H', W', kh * kw * C)``, ordered like a flattened
  ``(kh, kw, C, ...)`` kernel: shifted (strided) slices of the padded input, concatenated."""
  return _shifted_slices(x, kernel_size, strides, padding, channel_axis=-1)


def im2col_transposed(x: jnp.ndarray, kernel_size: Sequence[int], strides: Sequence[int],
                      padding: str) -> jnp.ndarray:
  """``im2col(x)`` as a ``(N H' W', kh kw C)`` matrix, transposed: ``(kh kw C, N H' W')``,
  gathered from the ``(C, N, H, W)`` images rather than by transposing the patches."""
  patches = _shifted_slices(jnp.transpose(x, (3, 0, 1, 2)), kernel_size, strides, padding,
                            channel_axis=0)
  return patches.reshape(patches.shape[0], -1)


def _on_bits(move, x: jnp.ndarray, *args) -> jnp.ndarray:
  """``move(x, *args)`` for bfloat16 ``x`` and a ``move`` that only moves values (pads
  with zeros, slices, transposes, concatenates), run on their bits as uint16."""
  moved = move(jax.lax.bitcast_convert_type(x, jnp.uint16), *args)
  return jax.lax.bitcast_convert_type(moved, BFLOAT16)


def _transposed(a: jnp.ndarray) -> jnp.ndarray:
  """``a.T`` for a bfloat16 matrix, materialized: its two column halves transposed and
  stacked (on the bits), which XLA cannot fold into the dot that consumes it."""
  if a.shape[1] == 1:
    return a.reshape(1, -1)
  half = a.shape[1] // 2
  return _on_bits(lambda u: jnp.concatenate([u[:, :half].T, u[:, half:].T]), a)


def _dot(a: jnp.ndarray, b: jnp.ndarray, contracting: tuple) -> jnp.ndarray:
  """A matmul with float32 results, contracting ``contracting = ((a axis,), (b axis,))``."""
  return jax.lax.dot_general(a, b, (contracting, ((), ())), preferred_element_type=jnp.float32)


@jax.custom_vjp
def bfloat16_matmul(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
  """``x @ w`` for float32 ``(M, K)`` and ``(K, N)`` matrices with bfloat16 operands and
  float32 results; both gradients are bfloat16 matmuls of the float32 output gradient
  rounded to bfloat16, the kernel's ``x^T g`` with ``x^T`` materialized."""
  return _bfloat16_matmul_fwd(x, w)[0]


def _bfloat16_matmul_fwd(x, w):
  xb, wb = x.astype(BFLOAT16), w.astype(BFLOAT16)
  return _dot(xb, wb, ((1,), (0,))), (xb, wb)


def _bfloat16_matmul_bwd(residuals, g):
  xb, wb = residuals
  gb = g.astype(BFLOAT16)
  return _dot(gb, wb, ((1,), (1,))), _dot(_transposed(xb), gb, ((1,), (0,)))


bfloat16_matmul.defvjp(_bfloat16_matmul_fwd, _bfloat16_matmul_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def bfloat16_im2col_conv(x: jnp.ndarray, kernel: jnp.ndarray, kernel_size: tuple[int, int],
                         strides: tuple[int, int], padding: str) -> jnp.ndarray:
  """The im2col convolution of float32 NHWC ``x`` with an HWIO ``kernel`` as bfloat16
  matmuls with float32 results, forward and backward."""
  return _bfloat16_im2col_conv_fwd(x, kernel, kernel_size, strides, padding)[0]


def _bfloat16_im2col_conv_fwd(x, kernel, kernel_size, strides, padding):
  xb, kb = x.astype(BFLOAT16), kernel.astype(BFLOAT16)
  patches = _on_bits(im2col, xb, kernel_size, strides, padding)
  return _dot(patches, kb.reshape(-1, kb.shape[-1]), ((3,), (0,))), (xb, kb)


def _bfloat16_im2col_conv_bwd(kernel_size, strides, padding, residuals, g):
  xb, kb = residuals
  g_rows = g.reshape(-1, g.shape[-1]).astype(BFLOAT16)
  kernel_matrix = kb.reshape(-1, kb.shape[-1])
  patches_grad = _dot(g_rows, kernel_matrix, ((1,), (1,)))
  im2col_transpose = jax.linear_transpose(lambda x: im2col(x, kernel_size, strides, padding),
                                          jax.ShapeDtypeStruct(xb.shape, jnp.float32))
  x_grad, = im2col_transpose(patches_grad.reshape(g.shape[:-1] + (kernel_matrix.shape[0],)))
  patches_t = _on_bits(im2col_transposed, xb, kernel_size, strides, padding)
  kernel_grad = _dot(patches_t, g_rows, ((1,), (0,)))
  return x_grad, kernel_grad.reshape(kb.shape)


bfloat16_im2col_conv.defvjp(_bfloat16_im2col_conv_fwd, _bfloat16_im2col_conv_bwd)


def _is_float32(*arrays) -> bool:
  return all(a.dtype == jnp.float32 for a in arrays)


def im2col_conv(x: jnp.ndarray, kernel: jnp.ndarray, kernel_size: tuple[int, int],
                strides: tuple[int, int], padding: str) -> jnp.ndarray:
  """A convolution of NHWC ``x`` with an HWIO ``kernel`` as one matmul of the patches;
  bfloat16 matmuls where this trace asks for them on CPU (``bfloat16_matmuls``)."""
  if bfloat16_matmuls() and _is_float32(x, kernel):
    return bfloat16_im2col_conv(x, kernel, kernel_size, strides, padding)
  return jnp.dot(im2col(x, kernel_size, strides, padding), kernel.reshape(-1, kernel.shape[-1]))


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """``lax.dot_general`` for ``nn.Dense`` (``dot_general=``): where this trace asks for
  bfloat16 matmuls on CPU, a float32 ``lhs (..., K) x rhs (K, N)`` is ``bfloat16_matmul``."""
  (lhs_contracting, rhs_contracting), (lhs_batch, _) = dimension_numbers
  if (bfloat16_matmuls() and _is_float32(lhs, rhs) and rhs.ndim == 2 and not lhs_batch
      and tuple(lhs_contracting) == (lhs.ndim - 1,) and tuple(rhs_contracting) == (0,)):
    y = bfloat16_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
    return y.reshape(lhs.shape[:-1] + rhs.shape[1:])
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type)
