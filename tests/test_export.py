"""A finished run exported (research/serving): the exported functions, loaded with jax alone,
equal the restored run's predictions on the same raw inputs, at any batch size; the TF
SavedModel gives the same; reference.json holds what a drift monitor needs."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from research import errors
from research.data import pipeline, splits, tabular
from research.serving import export, runtime
from research.train import loop, restore
from tests.conftest import ROOT, error_lines, load_config, run_launcher

RUNS = {
    "cnn": ("digits", {"model.conv_features": (8,), "model.dense_features": (16,)}),
    "logreg": ("penguins", {}),
    "vae": ("digits", {"model.latent_dim": 3, "evals.nll.num_samples": 20,
                       "evals.nll.chunk": 10}),
}


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
  """cnn:digits, logreg:penguins and vae:digits, each trained 20 steps and exported."""
  runs = {}
  for name, (arg, overrides) in RUNS.items():
    workdir = str(tmp_path_factory.mktemp(name))
    config = load_config(name, arg, data_dir=data_dir, **overrides)
    results = loop.train_and_evaluate(config, workdir)
    export.export(workdir)
    runs[name] = (workdir, os.path.join(workdir, "export"), results)
  return runs


def raw_test_split(run) -> dict:
  return pipeline.load_split(run.config.data, run.config.data.test_split)


def columns_of(rows: list[dict], raw: dict) -> dict:
  """Rows back as the dataset's columns: NaN (numbers) or "" (strings) where missing."""
  return {k: np.array([np.nan if r.get(k) is None else r[k] for r in rows], v.dtype)
          if v.dtype.kind == "f" else np.array(["" if r.get(k) is None else r[k] for r in rows],
                                               object) for k, v in raw.items()}


def test_classifier_export_equals_the_restored_run_at_any_batch_size(exported):
  workdir, export_dir, _ = exported["cnn"]
  run, served = restore.restore(workdir), runtime.load(export_dir)
  images = raw_test_split(run)["image"]
  assert images.dtype == np.uint8 and served.functions == ("probs", "logits", "features")
  for size in (7, 32):  # the batch dimension is symbolic
    batch = {"image": images[:size]}
    for name in served.functions:
      np.testing.assert_allclose(served.predict(name, batch), run.predict(name, batch),
                                 rtol=1e-6, atol=1e-6)
  meta = json.load(open(os.path.join(export_dir, "export.json")))
  assert meta["step"] == 20 and meta["inputs"] == {"image": [[8, 8, 1], "uint8"]}
  assert served.label_names == [str(i) for i in range(10)]
  assert meta["functions"]["probs"]["outputs"] == {"shape": ["b", "10"], "dtype": "float32"}
  assert "cpu" in meta["platforms"]
  with np.load(os.path.join(export_dir, "params.npz"), allow_pickle=False) as params:
    assert len(params.files) == meta["num_params"] == len(meta["param_paths"])


def rows_of(raw: dict, count: int) -> list[dict]:
  """The first ``count`` raw rows as dicts of plain Python values, NaN/"" as missing."""
  rows = []
  for i in range(count):
    row = {}
    for k, v in raw.items():
      value = v[i].decode() if isinstance(v[i], bytes) else v[i].item()
      if not (value == "" or (isinstance(value, float) and np.isnan(value))):
        row[k] = value
    rows.append(row)
  return rows


def test_tabular_rows_with_missing_values(exported):
  workdir, export_dir, _ = exported["logreg"]
  run, served = restore.restore(workdir), runtime.load(export_dir)
  raw = {k: v for k, v in raw_test_split(run).items() if k != "label"}
  # The runtime's standalone transform is research/data/tabular.py's, on the saved file.
  stats = json.load(open(os.path.join(workdir, tabular.TABULAR_FILE)))
  np.testing.assert_array_equal(runtime.tabular_transform(stats, raw),
                                tabular.transform(stats, raw, run.config.data.tabular))
  numeric, categorical = run.config.data.tabular.numeric[0], run.config.data.tabular.categorical[0]
  for size in (5, 11):
    rows = rows_of(raw, size)
    rows[0].pop(numeric, None)  # missing fields: imputed with the training statistics
    rows[1][categorical] = None
    rows[2] = {}
    expected = run.predict("probs", run.encode(columns_of(rows, raw)))
    got = served.predict("probs", rows)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert np.isfinite(got).all()
  assert served.label_names == ["Adelie", "Chinstrap", "Gentoo"]


def test_vae_elbo_and_nll_equal_the_restored_run_example_by_example(exported):
  """A VAE's exported functions see each example alone with the key: each output equals the
  restored run's on a batch of that example alone, whatever batch it is served in."""
  workdir, export_dir, _ = exported["vae"]
  run, served = restore.restore(workdir), runtime.load(export_dir)
  images = raw_test_split(run)["image"]
  assert served.functions == ("elbo", "nll")
  for size, seed in ((6, 1), (17, 2)):
    batch, key = {"image": images[:size]}, jax.random.PRNGKey(seed)
    elbo, nll = served.predict("elbo", batch, key), served.predict("nll", batch, key)
    for i in (0, size - 1):
      one = {"image": images[i:i + 1]}
      np.testing.assert_allclose(elbo[i], run.predict("elbo", one, key)[0], rtol=1e-6)
      np.testing.assert_allclose(nll[i], run.predict("nll", one, key, num_samples=20,
                                                     chunk=10)[0], rtol=1e-6)
  np.testing.assert_allclose(served.predict("elbo", {"image": images[:6]})[2:4],
                             served.predict("elbo", {"image": images[2:4]}), rtol=1e-6)
  one = {"image": images[:1]}  # the default key: the run's evaluation key, as restore's
  np.testing.assert_allclose(served.predict("elbo", one), run.predict("elbo", one), rtol=1e-6)


SERVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])  # the export directory alone: its runtime.py
    import runtime
    out = {}
    for name, (directory, function, inputs) in json.load(open(sys.argv[2])).items():
      served = runtime.load(directory)
      raw = inputs if isinstance(inputs, list) else {k: np.load(v) for k, v in inputs.items()}
      out[name] = served.predict(function, raw).tolist()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("research", "flax", "tensorflow"))
    json.dump({"outputs": out, "heavy": heavy}, open(sys.argv[3], "w"))
""")

SAVED_MODEL = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    out = {}
    for name, (directory, inputs) in json.load(open(sys.argv[1])).items():
      model = tf.saved_model.load(directory + "/saved_model")
      serve = model.signatures["serving_default"]
      result = serve(**{k: tf.constant(np.load(v)) for k, v in inputs.items()})
      out[name] = {k: v.numpy().tolist() for k, v in result.items()}
    json.dump(out, open(sys.argv[2], "w"))
""")


def fresh_python(script: str, *args: str, cwd: str):
  proc = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                                     "PYTHONPATH": ""})
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_fresh_process_serves_the_exports_with_jax_alone_and_tf_gives_the_same(
    exported, tmp_path):
  """Neither the project nor flax is importable there (cwd elsewhere, no PYTHONPATH)."""
  cases, expected, saved = {}, {}, {}
  for name, function in (("cnn", "probs"), ("logreg", "probs"), ("vae", "elbo")):
    workdir, export_dir, _ = exported[name]
    run = restore.restore(workdir)
    raw = raw_test_split(run)
    if name == "logreg":
      rows = rows_of({k: v for k, v in raw.items() if k != "label"}, 9)
      cases[name] = (export_dir, function, rows)
      inputs = runtime.load(export_dir).encode(rows)
    else:
      inputs = {"image": raw["image"][:9]}
      cases[name] = (export_dir, function, {})
    files = {}
    for k, v in inputs.items():
      files[k] = str(tmp_path / f"{name}_{k}.npy")
      np.save(files[k], v)
    if name != "logreg":
      cases[name] = (export_dir, function, files)
    saved[name] = (export_dir, files)
    expected[name] = run.predict(function, inputs) if name != "vae" else np.concatenate(
        [run.predict(function, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(9)])
  (tmp_path / "cases.json").write_text(json.dumps(cases))
  (tmp_path / "saved.json").write_text(json.dumps(saved))
  fresh_python(SERVER, exported["cnn"][1], str(tmp_path / "cases.json"), str(tmp_path / "out.json"),
               cwd=str(tmp_path))
  out = json.load(open(tmp_path / "out.json"))
  assert out["heavy"] == [], out["heavy"]
  for name, values in expected.items():
    np.testing.assert_allclose(out["outputs"][name], values, rtol=1e-6, atol=1e-7)
  fresh_python(SAVED_MODEL, str(tmp_path / "saved.json"), str(tmp_path / "tf.json"),
               cwd=str(tmp_path))
  tf_out = json.load(open(tmp_path / "tf.json"))
  for name, function in (("cnn", "probs"), ("logreg", "probs"), ("vae", "elbo")):
    np.testing.assert_allclose(tf_out[name][function], expected[name], rtol=1e-5, atol=1e-6)


def test_the_runtime_imports_no_model_code():
  code = ("import sys; from research.serving import runtime; "
          "print(sorted(m for m in sys.modules if m.startswith(('research.models', "
          "'research.tasks', 'research.train', 'research.data', 'flax', 'tensorflow'))))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "[]"


def test_reference_statistics_for_the_drift_monitor(exported):
  for name in RUNS:
    workdir, export_dir, results = exported[name]
    reference = json.load(open(os.path.join(export_dir, "reference.json")))
    assert reference["split"] == "val"
    config = restore.restore(workdir).config
    val_size = len(splits.RunData(config.data, workdir, 1000).arrays("val")["label"])
    score = reference["score"]
    assert reference["examples"] == score["count"] == len(score["sample"]) == val_size
    assert sum(score["bin_fractions"]) == pytest.approx(1.0)
    assert len(score["bin_edges"]) == len(score["bin_fractions"]) + 1
    assert score["quantiles"]["0"] <= score["quantiles"]["0.5"] <= score["quantiles"]["1"]
    if name == "vae":
      assert score["name"] == "neg_elbo"
      assert score["mean"] == pytest.approx(results["val/neg_elbo"], rel=0.05)
    else:
      # Log-odds of the max probability, at least that of 1/K (K classes: log 1/(K-1)).
      classes = len(reference["predicted_fractions"])
      assert score["name"] == "confidence" and score["quantiles"]["0"] >= -np.log(classes - 1)
      assert sum(reference["predicted_fractions"]) == pytest.approx(1.0)
  columns = json.load(open(os.path.join(exported["logreg"][1], "reference.json")))["columns"]
  assert {c["kind"] for c in columns.values()} == {"numeric", "categorical"}
  numeric = next(c for c in columns.values() if c["kind"] == "numeric")
  assert 0 <= numeric["missing_fraction"] < 1 and sum(numeric["bin_fractions"]) == pytest.approx(1)


def test_the_launcher_exports_and_refuses_an_empty_workdir(exported, tmp_path):
  workdir = exported["logreg"][0]
  proc = run_launcher("--mode=export", f"--workdir={workdir}", f"--export_dir={tmp_path}/out")
  assert proc.returncode == 0, proc.stderr[-3000:]
  meta = json.load(open(tmp_path / "out" / "export.json"))
  assert meta["step"] == 20 and meta["saved_model"] == "saved_model"
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = run_launcher("--mode=export", f"--workdir={empty}")
  assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr[-2000:]
  assert list(empty.iterdir()) == []


def test_unwritable_export_dir_and_no_checkpoint_are_one_line(exported, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(errors.UserError, match="not writable"):
    export.export(exported["cnn"][0], str(blocker / "export"), saved_model=False)
  with pytest.raises(errors.UserError, match="no checkpoint"):
    export.export(str(tmp_path))


def test_an_unsupported_task_is_one_line():
  from types import SimpleNamespace

  from ml_collections import ConfigDict
  run = SimpleNamespace(task=SimpleNamespace(capabilities=frozenset(), predictions=("score",)),
                        config=ConfigDict({"task": {"name": "one_class"}}))
  with pytest.raises(errors.ConfigError, match="cannot be exported"):
    export.function_names(run)
