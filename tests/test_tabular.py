"""Tabular data (research/data/tabular.py) on the bundled Palmer penguins: preprocessing
fitted on the training rows alone, missing values and unknown categories, the JSON file
reused by resume, --mode=eval and restore, and logreg:penguins trained end to end."""
import json
import os

import numpy as np
import pytest
from sklearn import impute, preprocessing

from research import errors
from research.data import penguins, pipeline, splits, tabular
from research.train import loop, modes, restore, validation
from tests.conftest import load_config


def penguins_config(data_dir, **overrides):
  return load_config("logreg", "penguins", data_dir=data_dir, **overrides)


def fitted(config, workdir):
  """The run's encoded ``train`` split and the statistics saved in ``workdir``."""
  data = splits.RunData(config.data, str(workdir), config.eval_batch_size)
  arrays = data.arrays("train")
  with open(os.path.join(workdir, tabular.TABULAR_FILE)) as f:
    return arrays, json.load(f)


def sklearn_features(spec, train, arrays):
  """What scikit-learn's own estimators, fitted on ``train``, make of ``arrays``."""
  def numbers(a):
    return np.stack([np.asarray(a[c], np.float64) for c in spec.numeric], 1)

  def strings(a):
    return np.stack([np.array([v.decode() if isinstance(v, bytes) else v for v in a[c]], object)
                     for c in spec.categorical], 1)
  num_imputer = impute.SimpleImputer(strategy="median").fit(numbers(train))
  x = num_imputer.transform(numbers(train))
  low, high = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
  scaler = preprocessing.StandardScaler().fit(np.clip(x, low, high))
  cat_imputer = impute.SimpleImputer(missing_values="", strategy="most_frequent").fit(
      strings(train))
  one_hot = preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(
      cat_imputer.transform(strings(train)))
  numeric = scaler.transform(np.clip(num_imputer.transform(numbers(arrays)), low, high))
  return np.concatenate([numeric, one_hot.transform(cat_imputer.transform(strings(arrays)))], 1)


def test_statistics_come_from_the_training_rows_alone(data_dir, tmp_path):
  config = penguins_config(data_dir)
  arrays, stats = fitted(config, tmp_path)
  train = pipeline.load_split(config.data, config.data.train_split)  # train[:90%]: 248 rows
  everything = pipeline.load_split(config.data, "train+test")
  assert stats["train_rows"] == len(train["label"]) == 248
  spec = config.data.tabular
  x = impute.SimpleImputer(strategy="median").fit_transform(
      np.stack([train[c].astype(np.float64) for c in spec.numeric], 1))
  observed = np.stack([train[c] for c in spec.numeric], 1).astype(np.float64)
  np.testing.assert_allclose([c["fill"] for c in stats["numeric"]], np.nanmedian(observed, 0))
  clipped = np.clip(x, np.quantile(x, 0.01, 0), np.quantile(x, 0.99, 0))
  np.testing.assert_allclose([c["mean"] for c in stats["numeric"]], clipped.mean(0))
  np.testing.assert_allclose([c["scale"] for c in stats["numeric"]], clipped.std(0))
  # Not the statistics of more rows: the means of all 344 rows differ.
  assert not np.allclose([c["mean"] for c in stats["numeric"]],
                         [np.nanmean(everything[c]) for c in spec.numeric])
  np.testing.assert_allclose(arrays["features"], sklearn_features(spec, train, train), atol=1e-5)
  test = pipeline.load_split(config.data, "test")
  np.testing.assert_allclose(splits.RunData(config.data, str(tmp_path), 100).arrays("test")[
      "features"], sklearn_features(spec, train, test), atol=1e-5)
  assert stats["features"][:5] == list(spec.numeric)
  assert stats["features"][5:] == ["island=Biscoe", "island=Dream", "island=Torgersen",
                                   "sex=female", "sex=male"]


def test_with_folds_the_fit_sees_the_folds_training_rows(data_dir, tmp_path):
  config = penguins_config(data_dir)
  config.data.folds = splits.folds_config(5, 1)
  _, stats = fitted(config, tmp_path)
  train = pipeline.load_split(config.data, config.data.train_split)
  rows = splits.fold_rows(train["label"], config.data.folds)["train"]
  assert stats["train_rows"] == len(rows)
  np.testing.assert_allclose(stats["numeric"][0]["fill"],
                             np.nanmedian(train["bill_length_mm"][rows].astype(np.float64)))
  assert stats["settings"]["folds"]["fold"] == 1


def rows(**columns):
  """Raw rows as the dataset has them: every column given as a list."""
  out = {c: np.array(columns.get(c, [np.nan]), np.float32) for c in penguins.NUMERIC}
  out.update({c: np.array([v.encode() for v in columns.get(c, [""])], object)
              for c in penguins.CATEGORICAL})
  out["label"] = np.zeros(len(out["island"]), np.int64)
  return out


def test_a_row_with_every_value_missing_is_its_columns_fill_values(data_dir, tmp_path):
  config = penguins_config(data_dir)
  _, stats = fitted(config, tmp_path)
  encode = splits.encoder(config.data, str(tmp_path), None)
  features = encode(rows())["features"][0]
  assert np.isfinite(features).all()
  filled = rows(**{c["column"]: [c["fill"]] for c in stats["numeric"] + stats["categorical"]})
  np.testing.assert_array_equal(features, encode(filled)["features"][0])
  # The most frequent training island (Biscoe) and sex, one-hot.
  assert features[5:].tolist() == [1, 0, 0, float(stats["categorical"][1]["fill"] == "female"),
                                   float(stats["categorical"][1]["fill"] == "male")]


def test_an_unknown_category_is_all_zeros_or_one_error_line(data_dir, tmp_path):
  config = penguins_config(data_dir)
  fitted(config, tmp_path)
  known = rows(island=["Dream"], sex=["male"], bill_length_mm=[40.0])
  unknown = rows(island=["Anvers"], sex=["male"], bill_length_mm=[40.0])
  ignore = splits.encoder(config.data, str(tmp_path), None)
  a, b = ignore(known)["features"][0], ignore(unknown)["features"][0]
  assert b[5:8].tolist() == [0, 0, 0] and a[5:8].tolist() == [0, 1, 0]
  np.testing.assert_array_equal(np.delete(a, [5, 6, 7]), np.delete(b, [5, 6, 7]))
  config.data.tabular.unknown_category = "error"
  other = tmp_path / "error"
  fitted(config, other)
  strict = splits.encoder(config.data, str(other), None)
  strict(known)
  with pytest.raises(errors.UserError, match=r"column 'island' has value\(s\) \['Anvers'\]") as e:
    strict(unknown)
  assert "\n" not in str(e.value)


def test_the_saved_json_gives_identical_features_and_is_never_refitted(data_dir, tmp_path):
  config = penguins_config(data_dir)
  arrays, stats = fitted(config, tmp_path)
  again = splits.RunData(config.data, str(tmp_path), 100).arrays("train")  # a resumed run
  np.testing.assert_array_equal(arrays["features"], again["features"])
  # A later run applies the file, even with the training split at hand: change a statistic.
  stats["numeric"][0]["mean"] += 1.0
  with open(tmp_path / tabular.TABULAR_FILE, "w") as f:
    json.dump(stats, f)
  tampered = splits.RunData(config.data, str(tmp_path), 100).arrays("train")
  np.testing.assert_allclose(tampered["features"][:, 0],
                             arrays["features"][:, 0] - 1.0 / stats["numeric"][0]["scale"],
                             atol=1e-5)
  config.data.tabular.clip_quantiles = ()
  with pytest.raises(errors.ConfigError, match=r"tabular.json was fitted with "
                     r"clip_quantiles=\[0.01, 0.99\], but the config asks for clip_quantiles=\[\]"):
    splits.RunData(config.data, str(tmp_path), 100).arrays("train")
  with pytest.raises(errors.UserError, match="no tabular.json in"):  # never fitted on test
    splits.RunData(config.data, str(tmp_path / "new"), 100).arrays("test")


@pytest.mark.parametrize("field, value, message", [
    ("data.tabular.numeric", ("bill_length_mm", "wing_span"), "data.tabular.numeric="),
    ("data.tabular.impute_numeric", "mode", "data.tabular.impute_numeric='mode' is not allowed"),
    ("data.tabular.impute_categorical", "median", "data.tabular.impute_categorical="),
    ("data.tabular.clip_quantiles", (0.9, 0.1), "data.tabular.clip_quantiles="),
    ("data.tabular.unknown_category", "skip", "data.tabular.unknown_category="),
    ("task.inputs", ("image",), "task.inputs="),
])
def test_a_bad_tabular_field_is_one_line_before_anything_loads(field, value, message):
  config = load_config("logreg", "penguins", data_dir="/nonexistent")
  config.update_from_flattened_dict({field: value})
  with pytest.raises(errors.ConfigError, match=message) as e:
    validation.validate(config, None)
  assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("logreg_penguins"))
  config = penguins_config(data_dir, total_steps=300, log_every_steps=50, eval_every_steps=100,
                           checkpoint_every_steps=100)
  return config, workdir, loop.train_and_evaluate(config, workdir)


def test_logreg_penguins_trains_end_to_end(trained):
  _, workdir, results = trained
  assert results["test/accuracy"] > 0.9
  spec = json.load(open(os.path.join(workdir, "input_spec.json")))
  assert spec["features"] == [[10], "float32"]


def test_eval_and_restore_apply_the_saved_file(trained):
  config, workdir, results = trained
  path = os.path.join(workdir, tabular.TABULAR_FILE)
  before = open(path).read(), os.stat(path).st_mtime_ns
  evaluated = modes.evaluate_checkpoint(None, workdir)
  assert evaluated["test/accuracy"] == pytest.approx(results["test/accuracy"])
  run = restore.restore(workdir)
  test = pipeline.load_split(config.data, "test")  # raw rows: NaN, "" and strings
  probs = run.predict("probs", run.encode(test))
  assert np.mean(probs.argmax(-1) == test["label"]) == pytest.approx(results["test/accuracy"])
  assert (open(path).read(), os.stat(path).st_mtime_ns) == before


def test_constant_imputation_codes_and_clipping_on_a_small_table():
  spec = load_config("logreg", "penguins").data.tabular
  spec.update(dict(numeric=("x",), categorical=("c",), impute_categorical="constant",
                   one_hot=False, clip_quantiles=(0.0, 0.5), standardize=False))
  train = {"x": np.array([1.0, 2.0, np.nan, 10.0]), "c": np.array([b"a", b"", b"b", b"a"], object)}
  stats = tabular.fit(train, spec)
  assert stats["numeric"][0]["fill"] == 2.0 and stats["numeric"][0]["clip"] == [1.0, 2.0]
  assert stats["categorical"][0]["categories"] == ["<missing>", "a", "b"]
  out = tabular.transform(stats, {"x": np.array([np.nan, 0.0, 7.0]),
                                  "c": np.array([None, b"b", b"z"], object)}, spec)
  # NaN -> the median 2; clipped to [1, 2]; missing -> "<missing>" (code 0); unknown "z" -> -1.
  np.testing.assert_array_equal(out, [[2.0, 0.0], [1.0, 2.0], [2.0, -1.0]])
  assert json.loads(json.dumps(stats)) == stats  # plain JSON, nothing else


def test_anomaly_report_is_the_roc_auc_of_normal_against_each_other_class():
  from research.evaluators import anomaly_report
  scores = np.array([0.1, 0.2, 0.3, 0.9, 0.25, 0.8])
  labels = np.array([0, 0, 0, 1, 2, 2])
  out = anomaly_report.report(scores, labels, (0,))
  assert out["auroc_label_1"] == 1.0 and out["auroc_label_2"] == pytest.approx(5 / 6)
  assert out["auroc"] == pytest.approx(8 / 9)  # 8 of the 9 (normal, anomaly) pairs in order
  with pytest.raises(errors.ConfigError, match="no rows of the normal classes"):
    anomaly_report.report(scores[3:], labels[3:], (0,))


def test_one_class_trains_on_the_normal_species_alone_and_separates_the_others(data_dir,
                                                                               tmp_path):
  config = load_config("one_class", None, data_dir=data_dir, total_steps=300,
                       log_every_steps=100, eval_every_steps=300, checkpoint_every_steps=300)
  results = loop.train_and_evaluate(config, str(tmp_path))
  train = pipeline.load_split(config.data, config.data.train_split)
  with open(tmp_path / tabular.TABULAR_FILE) as f:
    stats = json.load(f)
  adelie = train["label"] == 0
  assert stats["train_rows"] == adelie.sum() == 109  # the preprocessing saw Adelie alone
  np.testing.assert_allclose(stats["numeric"][2]["mean"],
                             np.nanmean(train["flipper_length_mm"][adelie].astype(np.float64)),
                             rtol=1e-3)  # the median-imputed rows move the mean a little
  assert results["test/auroc"] > 0.95 and results["test/auroc_label_1"] > 0.95
  config.data.train_labels = ()
  with pytest.raises(errors.ConfigError, match=r"data.train_labels=\(\) is not allowed"):
    validation.validate(config, None)
