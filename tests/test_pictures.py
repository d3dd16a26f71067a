"""The pictures a run writes, as a user opens them: image grids upscaled so each digit is
readable and labelled (input vs reconstruction, z[d] per traversal row, one class per CVAE
sample row), and the classification report's figures titled with run, split and step, the
reliability diagram with its per-bin counts and a legend off the bars, and an SVM's
calibration figure saying its probabilities are softmaxed margins."""
import os

import jax
import matplotlib.image
from matplotlib.backends import backend_agg
import numpy as np
import pytest

from research.core import sharding
from research.data import preprocess
from research.evaluation import classification, images
from research.evaluators import base as evaluators_base, classification_report
from research.evaluators import images as images_evaluator
from research.tasks import vae
from tests.conftest import load_config
from tests.test_step import build


def png_shape(path):
  return matplotlib.image.imread(path).shape


def traversal_grid(latents=32, size=8):
  """A VAE's traversal grid: one row of 8 images per latent (the shape that used to be
  289x73 px for 32 latents of 8x8 digits, saved at scale 1)."""
  layout = images.Layout(8, tuple(f"z[{d}]" for d in range(latents)),
                         tuple(f"{v:.1f}" for v in np.linspace(-3, 3, 8)),
                         title="run · traversals")
  return images.make_grid(np.random.default_rng(0).random((latents * 8, size, size, 1)),
                          layout=layout)


def test_tall_grids_of_small_digits_are_upscaled_to_readable_cells(tmp_path):
  grid = traversal_grid()
  assert grid.shape == (289, 73, 1) and grid.cell == (8, 8) and grid.rows == 32
  scale = images.save_png(str(tmp_path / "traversals.png"), grid)
  assert scale == images.png_scale(grid) >= 4 and 8 * scale >= images.MIN_CELL_PX
  height, width, _ = png_shape(tmp_path / "traversals.png")
  assert height >= 289 * scale and width >= 73 * scale  # the grid, and labels around it
  assert height <= 289 * scale + 300 and width <= 73 * scale + 400  # ...just its labels
  # The same pixels without a layout (as TensorBoard's copy) still reach readable sizes.
  assert images.png_scale(np.asarray(grid)) >= 4
  # Small grids reach about TARGET_PX; MNIST-sized cells need less upscaling.
  small = images.make_grid(np.zeros((64, 8, 8, 1)), columns=8)
  assert images.png_scale(small) * 73 == 511
  mnist = images.make_grid(np.zeros((64, 28, 28, 1)), columns=8)
  assert images.png_scale(mnist) * 28 >= images.MIN_CELL_PX
  # Large grids are capped: never upscaled beyond MAX_PX, even if cells stay smaller.
  for rows in (100, 200, 700):
    tall = images.make_grid(np.zeros((rows * 8, 8, 8, 1)), columns=8)
    scale = images.png_scale(tall)
    assert scale >= 1 and (scale == 1 or tall.shape[0] * scale <= images.MAX_PX)
  assert images.png_scale(images.make_grid(np.zeros((100 * 8, 8, 8, 1)), columns=8)) == 4
  assert images.png_scale(images.make_grid(np.zeros((200 * 8, 8, 8, 1)), columns=8)) == 2


def test_plain_grid_png_is_the_grid_upscaled_exactly(tmp_path):
  grid = images.make_grid(np.random.default_rng(1).random((16, 8, 8, 1)), columns=8)
  scale = images.save_png(str(tmp_path / "plain.png"), grid)
  assert png_shape(tmp_path / "plain.png")[:2] == (grid.shape[0] * scale, grid.shape[1] * scale)
  written = matplotlib.image.imread(tmp_path / "plain.png")[..., 0]
  np.testing.assert_allclose(written[::scale, ::scale], grid[..., 0], atol=3 / 255)  # 8-bit grey


def test_labelled_grid_names_its_rows_and_columns(tmp_path):
  grid = traversal_grid(latents=3)
  figure = images.labelled_figure(np.kron(grid[..., 0], np.ones((4, 4))), grid, 4)
  ax = figure.axes[0]
  assert [t.get_text() for t in ax.get_yticklabels()] == ["z[0]", "z[1]", "z[2]"]
  assert [t.get_text() for t in ax.get_xticklabels()][0] == "-3.0"
  assert ax.get_title() == "run · traversals"
  # Row labels shorter than the rows repeat: input / reconstruction pairs.
  pairs = images.make_grid(np.zeros((32, 8, 8, 1)),
                           layout=images.Layout(8, ("input", "reconstruction")))
  figure = images.labelled_figure(np.kron(pairs[..., 0], np.ones((4, 4))), pairs, 4)
  assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["input", "reconstruction"] * 2
  # Each label sits at the centre of its row of images.
  np.testing.assert_allclose(figure.axes[0].get_yticks(), [(1 + 4) * 4, (1 + 9 + 4) * 4,
                                                           (1 + 18 + 4) * 4, (1 + 27 + 4) * 4])


def context_for(task, config, workdir, batch):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  masked = {**batch, "mask": np.ones(len(batch["label"]), np.int32)}
  return evaluators_base.Context(
      task=task, workdir=str(workdir), rng=jax.random.PRNGKey(0),
      preprocess=preprocess.parse(config.data.preprocess), load=lambda spec: [masked],
      replicated=device, batch_sharding=device)


def test_cvae_grids_show_every_class_and_label_their_rows(data_dir, tmp_path):
  config = load_config("cvae", data_dir=data_dir, **{"model.latent_dim": 3,
                                                     "model.hidden": (32,)})
  task, _, state, batch = build(config, 64, 5)
  assert task.num_classes == 10
  processed = preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))
  summaries = jax.jit(task.images)(state.params, state.model_state, processed,
                                   jax.random.PRNGKey(0))
  assert summaries["samples"].shape == (10 * vae.COLUMNS, 8, 8, 1)  # 10 rows of 8, not 64
  classes = np.asarray(task.sample_condition(10 * vae.COLUMNS, -1)).argmax(-1)
  np.testing.assert_array_equal(classes.reshape(10, vae.COLUMNS),
                                np.repeat(np.arange(10)[:, None], vae.COLUMNS, 1))

  evaluator = images_evaluator.Evaluator("images", config.evals.images,
                                         context_for(task, config, tmp_path / "cvae_run", batch))
  out = evaluator.run(state, 7, "")
  samples = out.images["samples"]
  assert samples.rows == 10 and samples.shape == (10 * 9 + 1, 8 * 9 + 1, 1)
  assert samples.layout.row_labels == tuple(f"class {c}" for c in range(10))
  assert samples.layout.title == "cvae_run · samples · step 7"
  # Reconstructions: a row of 8 inputs, then the row of their reconstructions.
  recon = out.images["reconstructions"]
  assert recon.rows == 8 and recon.layout.row_labels == ("input", "reconstruction")
  mean, _ = jax.jit(task.encode)(state.params, state.model_state, processed, jax.random.PRNGKey(0))
  decoded = task.decode_mean(state.params, state.model_state, mean[:8],
                             task.condition(processed)[:8], jax.random.PRNGKey(0))
  np.testing.assert_allclose(summaries["reconstructions"][:8], processed["image"][:8])
  np.testing.assert_allclose(summaries["reconstructions"][8:16], decoded, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(recon)[1:9, 1:9], np.asarray(processed["image"][0]))
  np.testing.assert_allclose(np.asarray(recon)[10:18, 1:9], np.asarray(decoded[0]), atol=1e-6)
  assert out.images["traversals"].layout.row_labels == ("z[0]", "z[1]", "z[2]")
  assert len(out.images["interpolations"].layout.column_labels) == vae.COLUMNS
  for name, grid in out.images.items():  # the PNGs: readable cells, labels around them
    scale = images.save_png(str(tmp_path / f"{name}.png"), grid)
    assert 8 * scale >= images.MIN_CELL_PX, name
    height, width, _ = png_shape(tmp_path / f"{name}.png")
    assert height > grid.shape[0] * scale and width > grid.shape[1] * scale, name


def test_confusion_and_reliability_figures_are_titled_and_count_each_bin(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 500)
  logits = rng.normal(size=(500, 10)) + 3.0 * np.eye(10)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  title = "my_run · test · step 300"

  figure = classification.plot_confusion(labels, probs.argmax(-1), 10,
                                         str(tmp_path / "confusion.png"), title=title)
  ax = figure.axes[0]
  assert ax.get_title().splitlines()[0] == title
  assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted label", "true label")
  assert os.path.getsize(tmp_path / "confusion.png") > 0

  figure = classification.plot_reliability(probs, labels, str(tmp_path / "reliability.png"),
                                           title=title)
  assert os.path.getsize(tmp_path / "reliability.png") > 0
  suptitle = figure.get_suptitle().splitlines()
  assert suptitle[0] == title and suptitle[1].startswith("ECE ")
  ax, ax_count = figure.axes
  count, _, _ = classification.calibration_bins(probs, labels)
  assert count.sum() == 500
  np.testing.assert_array_equal([p.get_height() for p in ax_count.patches], count)
  annotated = [t.get_text() for t in ax_count.texts]
  assert annotated == [str(c) if c else "" for c in count]
  # The legend sits above the bars' axes, not over them.
  canvas = backend_agg.FigureCanvasAgg(figure)  # the figure comes back closed: draw it again
  canvas.draw()
  renderer = canvas.get_renderer()
  legend, axes = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
  assert legend.y0 >= axes.y1 - 1


@pytest.mark.parametrize("name, hinge", [("svm", True), ("logreg", False)])
def test_report_titles_name_the_run_and_say_when_probs_are_hinge_margins(name, hinge, data_dir,
                                                                          tmp_path):
  config = load_config(name, data_dir=data_dir)
  task, _, state, batch = build(config, 64, 5)
  workdir = tmp_path / f"{name}_run"
  evaluator = classification_report.Evaluator("report", config.evals.report,
                                              context_for(task, config, workdir, batch))
  prefix = evaluators_base.prefix("report", config.evals.report)
  assert evaluator.title(42, "") == f"{name}_run · {prefix} · step 42"
  assert evaluator.title(42, "replica_1") == f"{name}_run/replica_1 · {prefix} · step 42"
  assert classification_report.probs_note(task) == (classification.HINGE_NOTE if hinge else "")
  scalars = evaluator.run(state, 42, "").scalars
  assert 0 <= scalars["ece"] <= 1  # kept for SVMs too (studies compare it), with the note
  assert sorted(os.listdir(workdir / "reports")) == [
      f"{prefix}_confusion.png", f"{prefix}_per_class.csv", f"{prefix}_reliability.png"]
  out = evaluator.predict(state, evaluator.batches[0], evaluator.context.rng)
  figure = classification.plot_reliability(np.asarray(out["probs"]), np.asarray(out["label"]),
                                           None, title=evaluator.title(42, ""),
                                           note=classification_report.probs_note(task))
  lines = figure.get_suptitle().splitlines()
  assert lines[0] == f"{name}_run · {prefix} · step 42"
  assert ("softmaxed hinge margins" in lines[1]) == hinge
