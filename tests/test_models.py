"""Model output shapes and parameter counts."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.core import errors
from research.models import cnn, layers, linear, mlp, random_features, resnet, rnn, vae, vit


def count_params(variables) -> int:
  return sum(np.size(x) for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1), (32, 32, 3)])
def test_cnn_logits_shape(shape):
  model = cnn.Model(num_classes=10)
  x = jnp.zeros((3,) + shape)
  variables = model.init(jax.random.PRNGKey(0), x)
  assert model.apply(variables, x).shape == (3, 10)


def test_cnn_defaults_are_the_yardstick():
  """conv3x3(32)-avgpool-conv3x3(64)-avgpool-dense(256)-dense(10): 824,458 parameters."""
  model = cnn.Model(num_classes=10)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  assert count_params(variables) == 824_458


def test_vae_encode_decode_shapes():
  model = vae.Model(image_shape=(28, 28, 1), latent_dim=20, hidden=(500,))
  x = jnp.zeros((4, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  mean, log_var = model.apply(variables, x, method="encode")
  assert mean.shape == log_var.shape == (4, 20)
  # One likelihood parameter per pixel (outputs_per_pixel=1), on a trailing axis.
  assert model.apply(variables, mean, method="decode").shape == (4, 28, 28, 1, 1)
  assert model.apply(variables, x).shape == (4, 28, 28, 1, 1)
  # The yardstick VAE: 784-500-(2x20) and 20-500-784.
  assert count_params(variables) == 815_824


@pytest.mark.parametrize("model", [
    linear.Model(num_classes=7), mlp.Model(num_classes=7, hidden=(16, 8)),
    rnn.Model(num_classes=7, cell="lstm", hidden=16), rnn.Model(num_classes=7, cell="gru", hidden=16),
    rnn.Model(num_classes=7, hidden=16, num_layers=2), cnn.Model(num_classes=7, batch_norm=True),
    vit.Model(num_classes=7, patch_size=2, hidden=16, depth=2, num_heads=2, mlp_dim=32),
    resnet.Model(num_classes=7, stage_sizes=(1, 1, 1), width=4)])
def test_classifier_logits_shape(model):
  x = jnp.zeros((5, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert model.apply(variables, x).shape == (5, 7)


def test_rnn_reads_rows_in_order():
  """The RNN is order-sensitive: reversing the rows changes its output."""
  model = rnn.Model(num_classes=3, hidden=8)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 5, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  assert not np.allclose(model.apply(variables, x), model.apply(variables, x[:, ::-1]))


def test_resnet20_size_and_batch_stats():
  """ResNet-20 on CIFAR-10 inputs: 0.27M parameters; BN statistics are model state."""
  model = resnet.Model(num_classes=10)
  x = jnp.zeros((2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert 270_000 < count_params(variables) < 280_000
  assert "batch_stats" in variables
  logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert logits.shape == (2, 10) and "batch_stats" in updates


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((9, 9, 3), (3, 3), (1, 1), "SAME"), ((9, 8, 4), (3, 3), (2, 2), "SAME"),
    ((8, 8, 4), (1, 1), (2, 2), "SAME"), ((8, 8, 2), (4, 4), (4, 4), "VALID"),
    ((9, 9, 3), (4, 4), (2, 2), "SAME")])
def test_im2col_convolution_equals_xla_and_nn_conv(shape, kernel, strides, padding):
  """Same parameters as nn.Conv (names, shapes, initial values); im2col's outputs and
  gradients equal XLA's convolution."""
  x = jax.random.normal(jax.random.PRNGKey(1), (2,) + shape)
  conv = {impl: layers.Conv(5, kernel, strides, padding, impl=impl) for impl in ("xla", "im2col")}
  variables = conv["xla"].init(jax.random.PRNGKey(0), x)
  reference = nn.Conv(5, kernel, strides, padding)
  assert jax.tree.all(jax.tree.map(jnp.array_equal, variables,
                                   reference.init(jax.random.PRNGKey(0), x)))
  np.testing.assert_allclose(conv["xla"].apply(variables, x), reference.apply(variables, x),
                             atol=1e-6)

  def grads(impl):
    loss = lambda v, x: jnp.sum(jnp.sin(conv[impl].apply(v, x)))  # noqa: E731
    return jax.grad(loss, argnums=(0, 1))(variables, x)

  np.testing.assert_allclose(conv["im2col"].apply(variables, x), conv["xla"].apply(variables, x),
                             atol=1e-5)
  for a, b in zip(jax.tree.leaves(grads("im2col")), jax.tree.leaves(grads("xla")), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pool_equals_flax_pooling(kind):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 3))
  flax_pool = {"avg": nn.avg_pool, "max": nn.max_pool}[kind]
  np.testing.assert_allclose(layers.pool(x, kind, 2), flax_pool(x, (2, 2), strides=(2, 2)),
                             atol=1e-6)


def test_relu_equals_flax_relu_with_its_gradient():
  """Values, NaN propagation and the gradient, which is 0 at exactly 0 (zero-padded
  images and zero-initialized biases put many pre-activations there)."""
  x = jnp.array([-2.0, -0.5, 0.0, 0.0, 1e-30, 0.5, 3.0, jnp.nan])
  np.testing.assert_array_equal(layers.relu(x), nn.relu(x))
  grad = lambda fn: jax.grad(lambda x: jnp.sum(fn(x) * jnp.arange(1.0, 8.0)))(x[:-1])
  np.testing.assert_array_equal(grad(layers.relu), grad(nn.relu))
  np.testing.assert_array_equal(grad(layers.relu), [0, 0, 0, 0, 5, 6, 7])
  assert layers.relu(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  assert layers.activation("relu") is layers.relu


def test_unknown_conv_impl_is_a_config_error():
  with pytest.raises(errors.ConfigError, match="convolution implementation"):
    layers.Conv(4, impl="fft").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))


def test_random_fourier_features_approximate_the_rbf_kernel():
  from sklearn.metrics.pairwise import rbf_kernel
  x = jax.random.uniform(jax.random.PRNGKey(0), (20, 64))
  gamma = 0.1
  features = random_features.RandomFourierFeatures(num_features=20_000, gamma=gamma)
  variables = features.init(jax.random.PRNGKey(1), x)
  assert "params" not in variables  # drawn once, never trained
  phi = np.asarray(features.apply(variables, x), np.float64)
  np.testing.assert_allclose(phi @ phi.T, rbf_kernel(np.asarray(x), gamma=gamma), atol=0.03)


def test_kernel_svm_trains_only_the_linear_layer():
  model = random_features.Model(num_classes=10, num_features=256)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  assert jax.tree.map(jnp.shape, variables["params"]) == {
      "Dense_0": {"bias": (10,), "kernel": (256, 10)}}
  assert variables["random_features"]["RandomFourierFeatures_0"]["projection"].shape == (64, 256)
