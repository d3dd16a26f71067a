"""Model output shapes and parameter counts."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import errors
from research.models import (base, cnn, conv_vae, layers, linear, mlp, random_features, resnet,
                             rnn, text_transformer, vae, vit)


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


def _images():
  return (jax.random.normal(jax.random.PRNGKey(3), (5, 8, 8, 1)),)


def _text():
  return jax.random.randint(jax.random.PRNGKey(4), (5, 6), 0, 11), jnp.array([6, 3, 1, 0, 5])


# (model, inputs, the head's parameter path, the penultimate width)
CLASSIFIERS = {
    "linear": (linear.Model(num_classes=7), _images, "Dense_0", 64),
    "mlp": (mlp.Model(num_classes=7, hidden=(16, 8)), _images, "Dense_2", 8),
    "cnn": (cnn.Model(num_classes=7, conv_features=(4,), dense_features=(12, 6), batch_norm=True),
            _images, "Dense_2", 6),
    "resnet": (resnet.Model(num_classes=7, stage_sizes=(1, 1, 1), width=4), _images, "Dense_0", 16),
    "rnn": (rnn.Model(num_classes=7, cell="gru", hidden=16, num_layers=2), _images, "Dense_0", 16),
    "rnn_text": (rnn.Model(num_classes=7, hidden=16, vocab_size=11, embed_dim=8), _text,
                 "Dense_0", 16),
    "vit": (vit.Model(num_classes=7, patch_size=2, hidden=16, depth=1, num_heads=2, mlp_dim=32),
            _images, "Dense_0", 16),
    "text_transformer": (text_transformer.Model(num_classes=7, vocab_size=11, hidden=16, depth=1,
                                                num_heads=2, mlp_dim=32), _text, "Dense_0", 16),
    "kernel_svm": (random_features.Model(num_classes=7, num_features=32), _images, "Dense_0", 32),
}


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifiers_sow_their_penultimate_features(name):
  """Every classifier sows the input of its final Dense (``base.FEATURES``) only when
  ``intermediates`` is mutable: init's variables and a plain apply are unchanged, and the
  head (same parameter path as before) maps the features to the logits."""
  model, inputs, head, width = CLASSIFIERS[name]
  inputs = inputs()
  assert isinstance(model, base.Classifier) and not isinstance(model, base.VAE)
  variables = model.init(jax.random.PRNGKey(0), *inputs)
  assert base.FEATURES[0] not in variables
  assert jax.tree.map(jnp.shape, variables["params"][head]) == {"bias": (7,), "kernel": (width, 7)}
  logits = model.apply(variables, *inputs)
  assert isinstance(logits, jax.Array) and logits.shape == (5, 7)

  sown_logits, state = model.apply(variables, *inputs, mutable=[base.FEATURES[0]])
  assert jax.tree.map(jnp.shape, state) == {"intermediates": {"features": ((5, width),)}}
  np.testing.assert_array_equal(sown_logits, logits)
  features = base.sown_features(state)
  np.testing.assert_allclose(features @ variables["params"][head]["kernel"]
                             + variables["params"][head]["bias"], logits, rtol=1e-5, atol=1e-5)


def test_features_in_training_with_batch_stats():
  """Sown features come back next to the updated batch statistics (train=True)."""
  model, inputs, _, width = CLASSIFIERS["cnn"]
  inputs = inputs()
  variables = model.init(jax.random.PRNGKey(0), *inputs)
  logits, state = model.apply(variables, *inputs, train=True,
                              mutable=["batch_stats", base.FEATURES[0]])
  assert set(state) == {"batch_stats", "intermediates"}
  assert base.sown_features(state).shape == (5, width)
  np.testing.assert_array_equal(
      logits, model.apply(variables, *inputs, train=True, mutable=["batch_stats"])[0])


@pytest.mark.parametrize("model", [
    vae.Model(image_shape=(8, 8, 1), latent_dim=3, hidden=(16,)),
    conv_vae.Model(image_shape=(8, 8, 1), latent_dim=3, channels=(4, 8), hidden=16,
                   outputs_per_pixel=2, num_classes=4)])
def test_vaes_meet_the_vae_protocol(model):
  assert isinstance(model, base.VAE)
  x = jnp.zeros((2, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  condition = jax.nn.one_hot(jnp.array([1, 3]), 4) if model.num_classes else None
  mean, log_var = model.apply(variables, x, condition, method="encode")
  assert mean.shape == log_var.shape == (2, model.latent_dim)
  z = jnp.zeros((6, 2, model.latent_dim))  # extra leading axes (samples)
  assert model.apply(variables, z, condition, method="decode").shape == (
      (6, 2) + tuple(model.image_shape) + (model.outputs_per_pixel,))


def test_layer_stacks_are_not_classifiers():
  assert not isinstance(layers.MLP((4,)), base.Classifier)
  assert not isinstance(linear.Model(num_classes=3), base.VAE)
