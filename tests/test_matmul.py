"""bfloat16 matmuls on CPU (``config.matmul_precision="bfloat16"``, research/models/matmul.py):
exactly the float32 products of operands rounded to bfloat16, forward and backward."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.datasets

from research.core import state as state_lib
from research import errors
from research.core import optim, step as step_lib
from research.train import validation
from research.data import preprocess
from research.models import layers, matmul
from research.tasks import base as tasks_base
from tests.conftest import load_config

CONV_CASES = [((9, 9, 3), (3, 3), (1, 1), "SAME"), ((9, 8, 4), (3, 3), (2, 2), "SAME"),
              ((8, 8, 2), (4, 4), (4, 4), "VALID"), ((9, 9, 3), (4, 4), (2, 1), "SAME"),
              ((28, 28, 1), (3, 3), (1, 1), "SAME")]


def rounded(x):
  """``x`` rounded to bfloat16, as float32."""
  return x.astype(jnp.bfloat16).astype(jnp.float32)


def with_rounded_kernel(variables):
  """A layer's variables with its kernel rounded to bfloat16 (the bias as it is)."""
  params = variables["params"]
  return {"params": {**params, "kernel": rounded(params["kernel"])}}


def bfloat16_cotangent(shape, seed=2):
  """A float32 output gradient that bfloat16 holds exactly (the backward pass rounds it)."""
  return rounded(jax.random.normal(jax.random.PRNGKey(seed), shape))


def value_and_grads(fn, cotangent, *args):
  """``fn(*args)`` and the gradients of ``sum(fn(*args) * cotangent)``."""
  loss = lambda *a: jnp.sum(fn(*a) * cotangent)  # noqa: E731
  return fn(*args), jax.grad(loss, argnums=tuple(range(len(args))))(*args)


def assert_same(actual, expected, rtol=2e-6, atol=2e-6):
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    assert a.dtype == b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_dense_under_bfloat16_matmuls_multiplies_rounded_operands():
  """layers.Dense: nn.Dense's parameters; float32 results, equal to float32 products of the
  rounded input and kernel, and so are the input and kernel gradients."""
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 40))
  dense = layers.Dense(24)
  variables = dense.init(jax.random.PRNGKey(0), x)
  reference = nn.Dense(24, precision="highest")
  assert jax.tree.all(jax.tree.map(jnp.array_equal, variables,
                                   reference.init(jax.random.PRNGKey(0), x)))
  np.testing.assert_array_equal(dense.apply(variables, x), nn.Dense(24).apply(variables, x))
  g = bfloat16_cotangent((2, 3, 24))
  with jax.default_matmul_precision("bfloat16"):
    fast = value_and_grads(lambda v, x: dense.apply(v, x), g, variables, x)
  exact = value_and_grads(lambda v, x: reference.apply(v, x), g, with_rounded_kernel(variables),
                          rounded(x))
  assert_same(fast, exact)
  assert not np.allclose(fast[0], dense.apply(variables, x), rtol=1e-6, atol=0)  # it rounded


@pytest.mark.parametrize("shape, kernel, strides, padding", CONV_CASES)
def test_im2col_conv_under_bfloat16_matmuls_convolves_rounded_operands(shape, kernel, strides,
                                                                       padding):
  x = jax.random.normal(jax.random.PRNGKey(1), (2,) + shape)
  conv = layers.Conv(5, kernel, strides, padding, impl="im2col")
  variables = conv.init(jax.random.PRNGKey(0), x)
  reference = layers.Conv(5, kernel, strides, padding, impl="xla")
  y = conv.apply(variables, x)
  g = bfloat16_cotangent(y.shape)
  with jax.default_matmul_precision("bfloat16"):
    fast = value_and_grads(lambda v, x: conv.apply(v, x), g, variables, x)
  with jax.default_matmul_precision("highest"):
    exact = value_and_grads(lambda v, x: reference.apply(v, x), g,
                            with_rounded_kernel(variables), rounded(x))
  # Float32 sums of up to 1,568 products (the kernel gradient) in another order.
  assert_same(fast, exact, rtol=1e-5, atol=1e-4)
  assert not np.allclose(fast[0], y, rtol=1e-5, atol=1e-4)  # it rounded


@pytest.mark.parametrize("shape, kernel, strides, padding", CONV_CASES)
def test_im2col_transposed_is_the_transposed_patch_matrix(shape, kernel, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(1), (2,) + shape)
  patches = matmul.im2col(x, kernel, strides, padding)
  np.testing.assert_array_equal(matmul.im2col_transposed(x, kernel, strides, padding),
                                patches.reshape(-1, patches.shape[-1]).T)


def test_bfloat16_matmuls_apply_only_where_asked_and_only_on_float32():
  x = jnp.ones((4, 8))
  w = jnp.ones((8, 3))
  dims = (((1,), (0,)), ((), ()))
  assert not matmul.bfloat16_matmuls()
  with jax.default_matmul_precision("bfloat16"):
    assert matmul.bfloat16_matmuls() == (jax.default_backend() == "cpu")
    hlo = jax.jit(lambda x, w: matmul.dot_general(x, w, dims)).lower(x, w).as_text()
    assert ("bf16" in hlo) == (jax.default_backend() == "cpu")
    half = jax.jit(lambda x, w: matmul.dot_general(x, w, dims)).lower(
        x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).as_text()
    assert "f32" not in half  # a bfloat16 model (config.precision) keeps its own dots
  assert "bf16" not in jax.jit(lambda x, w: matmul.dot_general(x, w, dims)).lower(x, w).as_text()


def test_cnn_trains_with_bfloat16_matmuls_close_to_float32(data_dir):
  """config.matmul_precision reaches the model's matmuls (forward and backward) through the
  task; the steps' losses stay within bfloat16 rounding of float32's and fall."""
  digits = sklearn.datasets.load_digits()
  batch = {"image": np.round(digits.images[:64] * (255 / 16)).astype(np.uint8)[..., None],
           "label": digits.target[:64]}
  losses = {}
  for precision in ("default", "bfloat16"):
    config = load_config("cnn", data_dir=data_dir, matmul_precision=precision)
    config.optimizer.update(learning_rate=3e-3, schedule="constant")  # Adam
    task = tasks_base.make_task(config)
    optimizer = optim.make_optimizer(config.optimizer, 100)
    preprocess_fn = preprocess.parse(config.data.preprocess)
    step = jax.jit(step_lib.make_train_step(task, optimizer, preprocess_fn, microbatches=2))
    state = state_lib.init_state(task, optimizer, preprocess_fn, {n: v[:1] for n, v in batch.items()},
                            seed=0)
    emulated = precision == "bfloat16" and jax.default_backend() == "cpu"
    assert ("bf16" in step.lower(state, batch).as_text()) == emulated
    losses[precision] = []
    for _ in range(10):
      state, metrics = step(state, batch)
      losses[precision].append(float(metrics.compute()["loss"]))
  full, half = np.array(losses["default"]), np.array(losses["bfloat16"])
  assert half[-1] < 0.7 * half[0]
  np.testing.assert_allclose(half, full, rtol=0.05)
  assert not np.array_equal(half, full)


def test_unknown_matmul_precision_is_a_one_line_error(data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, matmul_precision="float8")
  with pytest.raises(errors.ConfigError, match="matmul_precision") as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)
