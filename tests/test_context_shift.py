"""Context-shift benchmarks generated here: Colored MNIST, background shift, MNIST-C."""
from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import stats

from research import errors
from research.data import background_shift, colored_mnist, corruptions, preprocess, tfds_sources


def stand_in_digits(pixel_size: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 8x8 digits as 28x28 uint8 MNIST-like images: each pixel
  ``pixel_size`` square, zero-padded around."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  pad = (28 - 8 * pixel_size) // 2
  images = np.kron(images, np.ones((1, pixel_size, pixel_size), np.uint8))
  images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
  return images[..., None], digits.target.astype(np.int64)


def tiled_digits(copies: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = stand_in_digits()
  return np.concatenate([images] * copies), np.concatenate([labels] * copies)


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
  return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1


# Colored MNIST

def test_colored_mnist_environment_has_the_stated_noise_and_colour_correlation():
  images, digits = tiled_digits(3)  # 5,391 examples
  for e in (0.1, 0.2, 0.9):
    env = colored_mnist.make_environment(images, digits, e, np.random.default_rng(1))
    n = len(digits)
    assert env["image"].shape == (n, 14, 14, 2) and env["image"].dtype == np.uint8
    assert within_binomial(int(np.sum(env["label"] != (digits < 5))), n, 0.25)
    assert within_binomial(int(np.sum(env["color"] != env["label"])), n, e)
    subsampled = images[:, ::2, ::2, 0]
    rows = np.arange(n)
    assert np.array_equal(env["image"][rows, :, :, env["color"]], subsampled)
    assert not env["image"][rows, :, :, 1 - env["color"]].any()  # the other channel is zero


def test_colored_mnist_environments_follow_the_reference_split_and_the_seed():
  images, digits = tiled_digits(2)  # 3,594: 2,995 training rows, 599 held out
  envs = colored_mnist.make_environments(images, digits, seed=0)
  assert len(envs["train_e20"]["label"]) == 1498 and len(envs["train_e10"]["label"]) == 1497
  assert all(len(envs[s]["label"]) == 599 for s in ("test_e90", "test_e80", "test_e70"))
  training = np.concatenate([envs["train_e20"]["source_index"],
                             envs["train_e10"]["source_index"]])
  assert np.array_equal(np.sort(training), np.arange(2995))
  assert np.array_equal(envs["test_e90"]["source_index"], np.arange(2995, 3594))
  for index, env in enumerate(colored_mnist.ENVIRONMENTS):
    assert np.all(envs[env.split]["environment"] == index)
  again = colored_mnist.make_environments(images, digits, seed=0)
  other = colored_mnist.make_environments(images, digits, seed=1)
  for split in envs:
    assert all(np.array_equal(envs[split][k], again[split][k]) for k in envs[split])
    assert not np.array_equal(envs[split]["color"], other[split]["color"])


@pytest.fixture
def stand_in_source():
  """tfds_sources.load_prepared_images returning the stand-in digits for train and test."""
  images, labels = stand_in_digits()

  def load(name, split, data_dir):
    del name, data_dir
    return (images, labels) if split == "train" else (images[:300], labels[:300])

  with mock.patch.object(tfds_sources, "load_prepared_images", side_effect=load) as patched:
    yield patched


def test_colored_mnist_builds_from_the_source_and_loads(tmp_path, stand_in_source):
  builder = colored_mnist.ColoredMnist(data_dir=str(tmp_path))
  builder.download_and_prepare()
  stand_in_source.assert_called_once_with("mnist", "train", str(tmp_path))
  splits = builder.info.splits
  assert splits["train"].num_examples == 1497 and splits["test"].num_examples == 300
  assert splits["train_e20"].num_examples + splits["train_e10"].num_examples == 1497
  test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
  test_e90 = tfds.as_numpy(builder.as_dataset(split="test_e90", batch_size=-1))
  assert test["image"].shape == (300, 14, 14, 2) and test["image"].dtype == np.uint8
  assert set(np.unique(test["environment"])) == {2}
  rows = lambda d: sorted(zip(d["digit"], d["label"], d["color"], map(bytes, d["image"])))
  assert rows(test) == rows(test_e90)  # test is the e = 0.9 environment


def test_colored_mnist_without_prepared_mnist_says_to_prepare_it(tmp_path):
  builder = colored_mnist.ColoredMnist(data_dir=str(tmp_path))
  with pytest.raises(errors.UserError, match="prepare mnist in your TFDS data dir first"):
    builder.download_and_prepare()


# Background shift

@pytest.mark.parametrize("rho", [0.99, 0.999, 0.1])
def test_backgrounds_match_the_label_with_probability_rho(rho):
  labels = np.repeat(np.arange(10), 500)
  backgrounds = background_shift.assign_backgrounds(labels, rho, np.random.default_rng(0))
  aligned = np.mean(backgrounds == labels)
  assert aligned == pytest.approx(int(500 * rho) / 500)
  if rho == 0.1:  # unbiased: every background about equally often within every class
    counts = np.array([[np.sum((labels == y) & (backgrounds == b)) for b in range(10)]
                       for y in range(10)])
    assert counts.min() >= 45 and counts.max() <= 56


@pytest.mark.parametrize("kind", ["colors", "textures"])
def test_background_shift_splits_are_biased_in_train_and_val_and_unbiased_in_test(kind):
  images, labels = tiled_digits(2)
  splits = background_shift.make_splits(images, labels, images, labels, kind, 0.99, seed=0)
  assert splits["train"]["image"].shape == (2995, 28, 28, 3)
  assert splits["train"]["image"].dtype == np.uint8 and len(splits["val"]["label"]) == 599
  for split, expected, tolerance in (("train", 0.99, 0.01), ("val", 0.99, 0.03),
                                     ("test", 0.1, 0.02)):
    aligned = np.mean(splits[split]["background"] == splits[split]["label"])
    assert aligned == pytest.approx(expected, abs=tolerance)
  assert not set(splits["train"]["source_index"]) & set(splits["val"]["source_index"])
  again = background_shift.make_splits(images, labels, images, labels, kind, 0.99, seed=0)
  other = background_shift.make_splits(images, labels, images, labels, kind, 0.99, seed=1)
  assert np.array_equal(splits["test"]["image"], again["test"]["image"])
  assert not np.array_equal(splits["test"]["image"], other["test"]["image"])


def test_backgrounds_are_distinct_and_the_digit_is_white_over_them():
  rng = np.random.default_rng(0)
  for kind in ("colors", "textures"):
    rendered = background_shift.render_backgrounds(kind, np.arange(10), rng)
    assert rendered.shape == (10, 28, 28, 3) and rendered.dtype == np.uint8
    flat = rendered.reshape(10, -1)
    assert len({row.tobytes() for row in flat}) == 10
  ink = np.zeros((1, 28, 28, 1), np.uint8)
  ink[0, 10:18, 12:16] = 255
  out = background_shift.composite(ink, background_shift.render_backgrounds(
      "colors", np.array([2]), rng))
  assert np.all(out[0, 10:18, 12:16] == 255)
  assert np.all(out[0, 0, 0] == background_shift.COLORS[2])


def test_background_shift_builds_from_the_source_and_loads(tmp_path, stand_in_source):
  builder = background_shift.BackgroundShift(config="mnist_textures_rho99", data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert stand_in_source.call_count == 2
  splits = builder.info.splits
  assert (splits["train"].num_examples, splits["val"].num_examples,
          splits["test"].num_examples) == (1497, 300, 300)
  test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
  assert test["image"].shape == (300, 28, 28, 3) and test["image"].dtype == np.uint8
  assert np.mean(test["background"] == test["label"]) < 0.2


# MNIST-C corruptions

@pytest.fixture(scope="module")
def digit_batch() -> np.ndarray:
  return stand_in_digits()[0][:40]


def ink_centroid(images: np.ndarray) -> np.ndarray:
  """(N, 2) row and column centroids of the ink."""
  x = images[..., 0].astype(np.float64)
  grid = np.arange(28.0)
  mass = x.sum(axis=(1, 2))
  return np.stack([(x.sum(2) * grid).sum(1) / mass, (x.sum(1) * grid).sum(1) / mass], axis=1)


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_each_corruption_keeps_shape_is_deterministic_and_changes_the_image(name, digit_batch):
  out = corruptions.corrupt_images(name, digit_batch, 7)
  assert out.shape == digit_batch.shape and out.dtype == np.uint8
  assert np.array_equal(out, corruptions.corrupt_images(name, digit_batch, 7))
  changed = np.any(out != digit_batch, axis=(1, 2, 3))
  assert changed.mean() > 0.9


def test_noise_corruptions_change_the_expected_pixels(digit_batch):
  impulse = corruptions.impulse_noise(digit_batch, 0)
  changed = np.mean(impulse != digit_batch)
  expected = corruptions.IMPULSE_AMOUNT * np.mean(
      0.5 * (digit_batch != 0) + 0.5 * (digit_batch != 255))
  assert changed == pytest.approx(expected, rel=0.1)
  assert set(np.unique(impulse[impulse != digit_batch])) <= {0, 255}
  shot = corruptions.shot_noise(digit_batch, 0)
  assert not shot[digit_batch == 0].any()  # Poisson noise of rate 0 is 0
  assert set(np.unique(shot)) <= {0, 85, 170, 255}  # counts / 3
  rate = 3 * digit_batch.astype(np.float64) / 255.0  # mean: 255 E[min(K, 3)] / 3, K ~ Poisson
  expected_mean = 255 / 3 * sum(k * stats.poisson.pmf(k, rate) for k in range(3)) + \
      255 * stats.poisson.sf(2, rate)
  assert shot.mean() == pytest.approx(expected_mean.mean(), rel=0.03)


def test_affine_corruptions_move_ink_as_stated(digit_batch):
  mass = digit_batch.sum(axis=(1, 2, 3)).astype(np.float64)
  for name in ("rotate", "shear"):
    moved = corruptions.corrupt_images(name, digit_batch, 0).sum(axis=(1, 2, 3))
    assert np.all(np.abs(moved / mass - 1) < 0.15)
  scaled = corruptions.scale(digit_batch, 0).sum(axis=(1, 2, 3))
  assert np.mean(scaled / mass) == pytest.approx(0.7 ** 2, abs=0.08)
  small = stand_in_digits(pixel_size=2)[0][:40]  # 16x16 digits: a 3-pixel shift crops none
  shift = ink_centroid(corruptions.translate(small, 0)) - ink_centroid(small)
  assert np.allclose(np.abs(shift), 3)  # 3 pixels along each axis, either sign
  assert len({tuple(np.sign(s)) for s in shift}) > 1


def test_intensity_corruptions_do_what_they_say(digit_batch):
  brighter = corruptions.brightness(digit_batch, 0)
  assert np.all(brighter >= digit_batch) and brighter.mean() > digit_batch.mean() + 100
  assert np.all(brighter[digit_batch == 0] == 127)
  striped = corruptions.stripe(digit_batch, 0)
  assert np.array_equal(striped[:, :, :7], 255 - digit_batch[:, :, :7])
  assert np.array_equal(striped[:, :, 7:21], digit_batch[:, :, 7:21])
  edges = corruptions.canny_edges(digit_batch, 0)
  assert set(np.unique(edges)) == {0, 255} and 0.02 < np.mean(edges > 0) < 0.3
  for name in ("glass_blur", "motion_blur"):
    blurred = corruptions.corrupt_images(name, digit_batch, 0).astype(np.float64)
    assert blurred.std() < digit_batch.std()
  for name in ("fog", "spatter", "dotted_line", "zigzag"):
    out = corruptions.corrupt_images(name, digit_batch, 0)
    assert np.any(out[digit_batch == 0] > 0)  # something drawn on the background


def test_plasma_fractal_is_a_unit_range_height_map():
  maps = corruptions.plasma_fractal(np.random.default_rng(0), 3)
  assert maps.shape == (3, 256, 256) and maps.min() == 0.0 and maps.max() == 1.0
  assert not np.array_equal(maps[0], maps[1])


def test_corrupt_is_a_preprocessing_op_in_the_jitted_step(digit_batch):
  op = jax.jit(preprocess.parse("corrupt('rotate')|scale(0, 1)"))
  key = jax.random.key(0)
  out = np.asarray(op({"image": digit_batch}, key)["image"])
  assert out.shape == digit_batch.shape and out.dtype == np.float32
  assert np.array_equal(out, np.asarray(op({"image": digit_batch}, key)["image"]))
  assert not np.allclose(out, digit_batch / 255.0)
  with pytest.raises(errors.ConfigError, match="unknown corruption"):
    preprocess.parse("corrupt('sunburn')")
  with pytest.raises(errors.ConfigError, match="before scale"):
    jax.jit(preprocess.parse("scale(0, 1)|corrupt('fog')"))({"image": digit_batch}, key)


def test_mean_corruption_error_averages_over_corruptions():
  summary = corruptions.mean_corruption_error({"fog": 0.3, "rotate": 0.1}, clean_error=0.05)
  assert summary["mean_corruption_error"] == pytest.approx(0.2)
  assert summary["mean_error_increase"] == pytest.approx(0.15)
  assert set(corruptions.mean_corruption_error({"fog": 0.3})) == {"mean_corruption_error"}
