"""Small building blocks shared by the model files."""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import errors
from research.models import base, matmul


def relu(x: jnp.ndarray) -> jnp.ndarray:
  """``nn.relu`` as ``x * (x > 0)``: the same values (NaN stays NaN) and gradient (0 at
  ``x = 0``), without ``nn.relu``'s custom JVP, whose zero tangent XLA:CPU materializes as
  a full array in every layer's backward pass: the CNN yardstick trains 5-7% faster."""
  return x * (x > 0).astype(x.dtype)


def activation(name: str):
  """An activation function by name: ``relu`` (this module's) or one of flax.linen's
  (gelu, tanh, ...)."""
  if name == "relu":
    return relu
  fn = getattr(nn, name, None)
  if not callable(fn):
    raise errors.ConfigError(f"unknown activation {name!r}")
  return fn


class Dense(nn.Dense):
  """``nn.Dense`` (the same parameters and names) that honours bfloat16 matmuls on CPU too
  (``matmul.dot_general``)."""
  dot_general: Callable = matmul.dot_general


def classifier_head(module: nn.Module, h: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  """A classifier's final layer: sows its input ``h`` (the penultimate representation) as
  ``module.sow(*base.FEATURES, h)`` and returns the logits ``Dense(num_classes)(h)``.

  Call it as ``layers.classifier_head(self, h, self.num_classes)`` from the model's
  ``nn.compact`` method: the Dense is created in ``module`` and auto-named ``Dense_N``
  there, the same parameters (names, shapes, initial values) as a direct
  ``Dense(num_classes)(h)``, so checkpoints are unaffected. The sow is a no-op unless
  ``intermediates`` is mutable (``base.Classifier``).
  """
  module.sow(*base.FEATURES, h)
  return Dense(num_classes, parent=module)(h)


class MLP(nn.Module):
  """Dense layers of the given widths, each followed by the activation."""
  widths: Sequence[int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, x):
    act = activation(self.activation)
    for width in self.widths:
      x = act(Dense(width)(x))
    return x


def flatten(x: jnp.ndarray) -> jnp.ndarray:
  return x.reshape(x.shape[0], -1)


CONV_IMPLS = ("auto", "xla", "im2col")


def resolve_conv_impl(impl: str) -> str:
  """``auto`` is ``im2col`` on CPU and XLA's convolution elsewhere (cuDNN, TPU)."""
  if impl not in CONV_IMPLS:
    raise errors.ConfigError(f"unknown convolution implementation {impl!r}; known: {CONV_IMPLS}")
  if impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  return impl


class Conv(nn.Module):
  """A 2-D convolution over NHWC images with ``nn.Conv``'s parameters (``kernel`` of shape
  ``(kh, kw, C_in, C_out)``, ``bias``) and initializers, so checkpoints do not depend on
  ``impl``:

  - ``xla``: ``lax.conv_general_dilated``, i.e. XLA's convolution (cuDNN on GPU);
  - ``im2col``: the patches (``matmul.im2col``) times the flattened kernel, one matmul. On
    XLA:CPU this runs the matmul in its fast dot library and, unlike XLA's CPU
    convolution, stays fast inside ``lax.scan`` (``steps_per_call``, ``microbatch_size``),
    and it honours bfloat16 matmuls (``matmul.bfloat16_matmuls``);
  - ``auto``: ``im2col`` on CPU, ``xla`` elsewhere.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"  # or VALID
  use_bias: bool = True
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        kernel_size + (x.shape[-1], self.features))
    kernel = kernel.astype(x.dtype)
    if resolve_conv_impl(self.impl) == "im2col":
      y = matmul.im2col_conv(x, kernel, kernel_size, strides, self.padding)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, strides, self.padding,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


def pool(x: jnp.ndarray, kind: str, window: int) -> jnp.ndarray:
  """Average or max pooling over non-overlapping ``window x window`` blocks of NHWC images
  (stride = window, trailing rows/columns that do not fill a block dropped, like
  ``nn.avg_pool``/``nn.max_pool`` with VALID padding), as a reshape and a reduction: its
  gradient is a broadcast, where ``reduce_window``'s is a slow scatter on XLA:CPU."""
  reduce = {"avg": jnp.mean, "max": jnp.max}[kind]
  n, h, w, c = x.shape
  h, w = h // window * window, w // window * window
  blocks = x[:, :h, :w].reshape(n, h // window, window, w // window, window, c)
  return reduce(blocks, axis=(2, 4))
