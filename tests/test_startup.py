"""Fast start-up: the split cache, TensorBoard files without TensorFlow, and a launcher run
that never imports TensorFlow once its data is cached."""
import glob
import io
import os
import shutil
import subprocess
import sys
import types
from unittest import mock

import numpy as np
import pytest
from etils import epath

from research.core import state as state_lib
from research.core import writers
from research.data import cache, pipeline
from tests.conftest import ROOT, load_config, stderr_summary

SPLITS = ("train_split", "val_split", "test_split")


def cached_config(data_dir: str, cache_dir, name: str = "cnn_fast"):
  config = load_config(name, data_dir=data_dir)
  config.data.cache_dir = str(cache_dir)
  return config


def test_cache_hit_returns_the_uncached_arrays(data_dir, tmp_path):
  config = cached_config(data_dir, tmp_path / "cache")
  uncached = pipeline.load_split(load_config("cnn_fast", data_dir=data_dir).data, "train[:90%]")
  first = pipeline.load_split(config.data, "train[:90%]")  # reads through TFDS, fills the cache
  assert len(glob.glob(str(tmp_path / "cache" / "digits-1.0.0-*.npz"))) == 1
  with mock.patch.object(pipeline, "read_split", side_effect=AssertionError("not cached")):
    hit = pipeline.load_split(config.data, "train[:90%]")
  for arrays in (first, hit):
    assert list(arrays) == list(uncached)
    for name in uncached:
      assert arrays[name].dtype == uncached[name].dtype
      np.testing.assert_array_equal(arrays[name], uncached[name])


def test_text_is_cached_without_pickle(tmp_path):
  texts = np.empty(4, object)
  texts[:] = [b"hello world", b"", "caf\u00e9 \u2615".encode(), b"ends in nul\x00"]
  arrays = {"text": texts, "grid": np.empty((2, 2), object), "label": np.arange(4)}
  arrays["grid"][:] = [[b"a", b"bc"], [b"", b"d"]]
  path = str(tmp_path / "entry.npz")
  cache.save(path, arrays)
  loaded = cache.load(path, ["text", "grid", "label"])
  for name, array in arrays.items():
    assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
    assert loaded[name].tolist() == array.tolist()
  with open(path, "wb") as f:
    f.write(b"half a file")
  assert cache.load(path, ["label"]) is None  # unreadable: a miss, never an error


def fake_builder(folder, version="1.0.0"):
  return types.SimpleNamespace(data_path=epath.Path(folder), version=version,
                               info=types.SimpleNamespace(full_name=f"fake/{version}"))


def test_entry_changes_with_anything_that_changes_the_content(tmp_path):
  info = tmp_path / cache.INFO_FILE
  info.write_text('{"a": 1}')
  key = dict(cache_dir="/c", split="train", features=("image", "label"))

  def entry(builder=None, **changes):
    args = {**key, **changes}
    return cache.entry_path(args["cache_dir"], builder or fake_builder(tmp_path),
                            args["split"], args["features"])

  first = entry()
  assert first == entry() and first.startswith("/c/fake-1.0.0-")
  others = [entry(split="train[:90%]"), entry(features=("image",)),
            entry(builder=fake_builder(tmp_path, "1.0.1"))]
  info.write_text('{"a": 2}')
  others.append(entry())
  os.utime(info, (0, 0))
  others.append(entry())
  assert len({first, *others}) == 1 + len(others)
  assert entry(cache_dir="") is None
  info.unlink()  # no prepared dataset to key by (e.g. TFDS mock data): no cache
  assert entry() is None


def test_changed_dataset_info_is_reread(data_dir, tmp_path):
  prepared = tmp_path / "tfds"
  shutil.copytree(data_dir, prepared)
  config = cached_config(str(prepared), tmp_path / "cache")
  pipeline.load_split(config.data, "test")
  info = next(prepared.glob("digits/*/dataset_info.json"))
  info.write_text(info.read_text() + "\n")  # e.g. prepared again
  with mock.patch.object(pipeline, "read_split", wraps=pipeline.read_split) as read:
    pipeline.load_split(config.data, "test")
  assert read.call_count == 1
  assert len(list((tmp_path / "cache").iterdir())) == 2


def test_missing_dataset_is_not_masked_by_the_cache(tmp_path):
  config = cached_config(str(tmp_path / "empty"), tmp_path / "cache", name="cnn")
  config.data.name, config.data.download = "mnist", False
  with pytest.raises(pipeline.DatasetUnavailableError, match="'mnist' is not prepared"):
    pipeline.load_split(config.data, "train")


def test_tensorboard_round_trip(tmp_path):
  from PIL import Image
  from tensorboard.backend.event_processing import event_accumulator

  writer = writers.TensorBoardWriter(str(tmp_path))
  writer.write_scalars(1, {"train/loss": 2.5, "val/accuracy": np.float32(0.25)})
  writer.write_scalars(2, {"train/loss": 1.5})
  grey = np.linspace(0, 1, 20, dtype=np.float32).reshape(1, 4, 5, 1)
  rgb = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)
  writer.write_images(2, {"samples": grey, "pair": rgb})
  writer.write_hparams({"batch_size": 64, "seed": 0})
  writer.close()
  assert os.path.basename(writer.path).startswith("events.out.tfevents.")

  events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"images": 0})
  events.Reload()
  assert events.file_version == 2.0
  assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 2.5), (2, 1.5)]
  assert events.Scalars("val/accuracy")[0].value == 0.25
  image = events.Images("samples")[0]
  assert (image.step, image.height, image.width) == (2, 4, 5)
  decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
  np.testing.assert_array_equal(decoded, np.round(grey[0, ..., 0] * 255).astype(np.uint8))
  for i in range(2):
    decoded = Image.open(io.BytesIO(events.Images(f"pair/{i}")[0].encoded_image_string))
    np.testing.assert_array_equal(np.asarray(decoded), rgb[i])
  hparams = events.Tensors("hparams")[0].tensor_proto.string_val[0].decode()
  assert "| batch_size | 64 |" in hparams and "| seed | 0 |" in hparams


# Runs launch.py and reports, at exit, which modules of TensorFlow itself were imported.
WITH_IMPORT_REPORT = """
import atexit, runpy, sys
atexit.register(lambda: print("tensorflow modules:", sorted(
    m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")), file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_launch_with_cached_data_never_imports_tensorflow(data_dir, tmp_path):
  config = cached_config(data_dir, tmp_path / "cache")
  for split in SPLITS:
    pipeline.load_split(config.data, config.data[split])  # warm the cache
  workdir = tmp_path / "run"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.run(
      [sys.executable, "-c", WITH_IMPORT_REPORT, os.path.join(ROOT, "launch.py"),
       "--config=cnn_fast:digits", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
       f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.total_steps=10"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "tensorflow modules: []" in proc.stderr, stderr_summary(proc.stderr)
  assert glob.glob(str(workdir / "events.out.tfevents.*"))
  assert "test/accuracy=" in proc.stdout


@pytest.mark.parametrize("name", ["cnn_fast", "resnet", "vae", "kernel_svm", "vit"])
def test_init_compiled_for_start_up_gives_the_same_state(name, data_dir):
  """The initialisation is compiled without backend optimisations (faster start-up):
  the state must be the one the default compilation gives (to float rounding: the
  unoptimised code may round the last bit of a random normal differently)."""
  import jax
  from research.core import optim
  from research.data import preprocess
  from research.tasks import base as tasks_base

  config = load_config(name, data_dir=data_dir)
  optimizer = optim.make_optimizer(config.optimizer, 10)
  example = {k: v[:1] for k, v in pipeline.load_split(config.data, "train[:1%]").items()}
  task = tasks_base.make_task(config, example)
  preprocess_fn = preprocess.parse(config.data.preprocess)
  fast = state_lib.init_state(task, optimizer, preprocess_fn, example, 3)
  default = jax.jit(state_lib.make_init(task, optimizer, preprocess_fn))(3, example)
  as_array = lambda leaf: np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(
      leaf.dtype, jax.dtypes.prng_key) else leaf)
  assert jax.tree.structure(fast) == jax.tree.structure(default)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(default)):
    np.testing.assert_allclose(as_array(a), as_array(b), rtol=1e-6, atol=1e-7)
