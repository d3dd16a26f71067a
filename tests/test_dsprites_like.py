"""The generated dSprites-like data: its grid, its rendering and its small TFDS config."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from research.data import dsprites_like, pipeline

FULL_SIZE = 3 * 6 * 40 * 32 * 32


def centroid(image: np.ndarray) -> tuple[float, float]:
  """(column, row) of the on pixels' centres, in pixel coordinates."""
  rows, cols = np.nonzero(image[..., 0])
  return cols.mean() + 0.5, rows.mean() + 0.5


def test_grid_is_complete_and_in_row_major_order():
  grid = dsprites_like.factor_grid()
  assert grid.shape == (FULL_SIZE, 5) and grid.dtype == np.int64
  for k, count in enumerate(dsprites_like.NUM_CLASSES):
    values, counts = np.unique(grid[:, k], return_counts=True)
    assert np.array_equal(values, np.arange(count))
    assert np.all(counts == FULL_SIZE // count)
  indices = np.arange(FULL_SIZE)
  assert np.array_equal(dsprites_like.factors_of(indices), grid)
  assert np.array_equal(dsprites_like.index_of(grid), indices)
  assert np.array_equal(dsprites_like.factors_of(1), [0, 0, 0, 0, 1])  # y varies fastest
  assert np.array_equal(dsprites_like.factors_of(32 * 32 * 40 * 6), [1, 0, 0, 0, 0])


def test_factor_values_are_dsprites_like():
  assert dsprites_like.SCALES == pytest.approx(np.linspace(0.5, 1.0, 6))
  assert dsprites_like.ORIENTATIONS[0] == 0.0 and dsprites_like.ORIENTATIONS[-1] < 2 * np.pi
  assert dsprites_like.POSITIONS == pytest.approx(np.linspace(0.0, 1.0, 32))
  values = dsprites_like.values_of([[2, 5, 10, 31, 0]])
  assert values[0] == pytest.approx([2.0, 1.0, np.pi / 2, 1.0, 0.0])


def test_small_grid_keeps_every_shape_and_scale_and_every_4th_orientation_and_position():
  grid = dsprites_like.factor_grid(orientation_step=4, position_step=4)
  assert len(grid) == 3 * 6 * 10 * 8 * 8 == 11_520
  assert set(grid[:, 2]) == set(range(0, 40, 4)) and set(grid[:, 3]) == set(range(0, 32, 4))
  assert np.all(np.diff(dsprites_like.index_of(grid)) > 0)  # a sub-grid, in index order


def test_the_same_index_always_renders_the_same_image():
  indices = np.random.default_rng(0).integers(0, FULL_SIZE, 50)
  first = dsprites_like.render(dsprites_like.factors_of(indices))
  assert first.shape == (50, 64, 64, 1) and first.dtype == np.uint8
  assert set(np.unique(first)) <= {0, 255}
  again = dsprites_like.render(dsprites_like.factors_of(indices[::-1]))[::-1]
  assert np.array_equal(first, again)  # independent of the batch it is rendered in
  single = dsprites_like.render(dsprites_like.factors_of(indices[7]))
  assert np.array_equal(single[0], first[7])


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_the_centroid_follows_the_x_and_y_positions(shape):
  positions = np.arange(32)
  orientation = 7
  along_x = dsprites_like.render([[shape, 3, orientation, p, 16] for p in positions])
  along_y = dsprites_like.render([[shape, 3, orientation, 16, p] for p in positions])
  x = np.array([centroid(image)[0] for image in along_x])
  y = np.array([centroid(image)[1] for image in along_y])
  assert np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)
  expected = dsprites_like.centre_pixels(dsprites_like.POSITIONS)
  assert np.max(np.abs(x - expected)) < 1.5 and np.max(np.abs(y - expected)) < 1.5
  assert 8 <= expected[0] and expected[-1] <= 56  # the centre stays well inside the frame


def test_every_sprite_lies_inside_the_frame_and_area_grows_with_scale():
  corners = [[s, k, o, x, y] for s in range(3) for k in range(6) for o in range(0, 40, 5)
             for x in (0, 31) for y in (0, 31)]
  images = dsprites_like.render(corners)
  assert np.all(images.reshape(len(images), -1).max(axis=1) == 255)
  border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
  assert border.mean() < 0.05 * 255  # sprites at the corners touch the border little
  for shape in range(3):
    areas = (dsprites_like.render([[shape, k, 0, 16, 16] for k in range(6)]) > 0).sum((1, 2, 3))
    assert np.all(np.diff(areas) > 0)
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.1)  # area goes as scale squared


def test_shapes_differ_and_rotation_turns_them():
  shapes = dsprites_like.render([[s, 5, 0, 16, 16] for s in range(3)]) > 0
  for a in range(3):
    for b in range(a + 1, 3):
      overlap = (shapes[a] & shapes[b]).sum() / (shapes[a] | shapes[b]).sum()
      assert overlap < 0.85
  areas = shapes.sum((1, 2, 3))
  assert areas[1] < areas[0] < areas[2]  # ellipse < square < heart
  heart = dsprites_like.render([[2, 5, o, 16, 16] for o in (0, 20)]) > 0
  reach = []  # how much farther the sprite reaches below its centroid than above
  for image in heart:
    rows = np.nonzero(image[..., 0])[0] + 0.5
    reach.append((rows.max() - centroid(image)[1]) - (centroid(image)[1] - rows.min()))
  assert reach[0] > 1 and reach[1] < -1  # the tip points down; half a turn: up
  square = dsprites_like.render([[0, 5, o, 16, 16] for o in (0, 5)]) > 0
  assert not np.array_equal(square[0], square[1])  # 45 degrees: a diamond
  ellipse = dsprites_like.render([[1, 5, o, 16, 16] for o in (0, 10)]) > 0
  rows, cols = np.nonzero(ellipse[0][..., 0])
  turned_rows, turned_cols = np.nonzero(ellipse[1][..., 0])
  assert np.ptp(cols) > 1.7 * np.ptp(rows) and np.ptp(turned_rows) > 1.7 * np.ptp(turned_cols)


def test_the_small_config_builds_offline_and_loads_through_tfds(tmp_path):
  pipeline._register_bundled()
  builder = pipeline.get_builder("dsprites_like/small", str(tmp_path), download=False)
  assert builder.BUNDLED and builder.is_prepared()
  assert list(builder.info.splits) == ["train"]
  assert builder.info.splits["train"].num_examples == 11_520
  features = builder.info.features
  assert features["image"].shape == (64, 64, 1)
  assert features["label"].names == ["square", "ellipse", "heart"]
  assert features["factors"].shape == (5,) and features["factors"].np_dtype == np.int64
  examples = list(tfds.as_numpy(builder.as_dataset(split="train").take(64)))
  for example in examples:
    assert example["label"] == example["factors"][0]
    assert example["values"] == pytest.approx(dsprites_like.values_of(example["factors"]))
    assert np.array_equal(example["image"], dsprites_like.render(example["factors"])[0])
  assert tfds.builder("dsprites_like", data_dir=str(tmp_path)).builder_config.name == "full"
