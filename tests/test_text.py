"""Text: the tokenizer (built from train only, saved as JSON and reloaded), padded token
ids, the text models' padding invariance, multi-label loss and F1, and a launcher run
on mock GoEmotions data."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from research.train import workdir as workdir_lib
from research.train import modes
from research.core import state as state_lib
from research import errors
from research.core import optim, step as step_lib
from research.train import loop, validation
from research.data import preprocess, text
from research.evaluation import classification as classification_eval
from research.tasks import base as tasks_base
from research.tasks import multilabel
from tests.conftest import load_config

TRAIN = {"text": np.array([b"The cat sat.", b"the dog sat", b"A cat, a DOG!", b"the end"]),
         "intent": np.array([0, 1, 2, 3], np.int32)}
VALIDATION = {"text": np.array([b"the zebra sat"]), "intent": np.array([1], np.int32)}
SMALL_TRANSFORMER = {"model.hidden": 32, "model.mlp_dim": 64, "model.depth": 1,
                     "model.num_heads": 2}


def text_config(name="text_transformer", arg="clinc_oos", **overrides):
  return load_config(name, arg=arg, **overrides)


def test_tokenizer_is_built_from_train_only_and_reloaded_from_json(tmp_path):
  config = text_config(**{"data.text.min_count": 2, "data.text.max_length": 4})
  splits = text.encode_splits(config.data, {"train": TRAIN, "val": VALIDATION}, str(tmp_path))
  saved = json.load(open(tmp_path / text.TOKENIZER_FILE))
  # Words seen twice in train, by count then alphabetically; "zebra" (val only) is unknown.
  assert saved["vocab"] == ["<pad>", "<unk>", "the", "a", "cat", "dog", "sat"]
  assert saved["settings"]["train_split"] == "train" and saved["settings"]["max_length"] == 4
  ids = {w: i for i, w in enumerate(saved["vocab"])}
  np.testing.assert_array_equal(splits["val"]["tokens"], [[ids["the"], 1, ids["sat"], 0]])
  np.testing.assert_array_equal(splits["val"]["length"], [3])
  # Truncated to max_length; punctuation ("," "!") is a word seen once: <unk>.
  np.testing.assert_array_equal(splits["train"]["tokens"][2],
                                [ids["a"], ids["cat"], 1, ids["a"]])
  np.testing.assert_array_equal(splits["train"]["length"], [4, 3, 4, 2])
  np.testing.assert_array_equal(splits["train"]["tokens"][3, 2:], [0, 0])  # <pad>
  np.testing.assert_array_equal(splits["train"]["label"], TRAIN["intent"])

  # A later run reloads the file, even when handed other "training" texts.
  other = {"train": {"text": np.array([b"zebra zebra zebra"]), "intent": np.zeros(1, np.int32)},
           "val": VALIDATION}
  again = text.encode_splits(config.data, other, str(tmp_path))
  np.testing.assert_array_equal(again["val"]["tokens"], splits["val"]["tokens"])
  tokenizer, _ = text.Tokenizer.from_json((tmp_path / text.TOKENIZER_FILE).read_text())
  assert tokenizer.vocab == saved["vocab"]
  config.data.text.max_length = 8
  with pytest.raises(errors.ConfigError, match="max_length=4.*max_length=8"):
    text.encode_splits(config.data, other, str(tmp_path))


def test_vocab_size_caps_the_vocabulary_and_labels_stack_multi_hot():
  tokenizer = text.Tokenizer.build(TRAIN["text"], vocab_size=4, min_count=1, max_length=3)
  assert tokenizer.vocab == ["<pad>", "<unk>", "the", "a"]
  arrays = {"x": np.array([True, False]), "y": np.array([False, False]),
            "z": np.array([True, True])}
  np.testing.assert_array_equal(text.labels(arrays, ("x", "y", "z")), [[1, 0, 1], [0, 0, 1]])


def apply_model(name, arg, tokens, lengths):
  config = text_config(name, arg, **({"model.hidden": 16, "model.embed_dim": 8}
                                     if name == "rnn" else SMALL_TRANSFORMER))
  config.data.text.vocab_size = 50
  task = tasks_base.make_task(config)
  batch = {"tokens": tokens, "length": lengths}
  variables = task.init_variables(jax.random.PRNGKey(0), batch)
  return jax.jit(lambda t: task.model.apply(variables, t, lengths))


@pytest.mark.parametrize("name, arg, num_classes", [
    ("text_transformer", "clinc_oos", 150), ("rnn", "clinc_oos", 150),
    ("text_transformer", "goemotions", 28)])
def test_text_models_ignore_padding(name, arg, num_classes):
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 50, (4, 10)).astype(np.int32)
  lengths = np.array([10, 3, 1, 0], np.int32)
  model = apply_model(name, arg, tokens, lengths)
  logits = np.asarray(model(tokens))
  assert logits.shape == (4, num_classes) and np.all(np.isfinite(logits))
  padding = np.arange(10)[None] >= lengths[:, None]
  changed = np.where(padding, rng.integers(2, 50, tokens.shape), tokens).astype(np.int32)
  np.testing.assert_allclose(model(changed), logits, atol=1e-5)
  changed[1, 0] = (changed[1, 0] + 1) % 50  # a valid token does matter
  assert not np.allclose(model(changed)[1], logits[1], atol=1e-5)


def overfit(config, batch, num_steps):
  task = tasks_base.make_task(config)
  optimizer = optim.make_optimizer(config.optimizer, num_steps)
  preprocess_fn = preprocess.parse(config.data.preprocess)
  state = state_lib.init_state(task, optimizer, preprocess_fn, batch, config.seed)
  train_step = jax.jit(step_lib.make_train_step(task, optimizer, preprocess_fn))
  history = []
  for _ in range(num_steps):
    state, metrics = train_step(state, batch)
    history.append({k: float(v) for k, v in metrics.compute().items()})
  return history


def random_text_batch(num_labels: int | None, size=16, length=12, vocab=50):
  rng = np.random.default_rng(1)
  lengths = rng.integers(1, length + 1, size).astype(np.int32)
  tokens = rng.integers(2, vocab, (size, length)) * (np.arange(length) < lengths[:, None])
  labels = (rng.integers(0, 150, size) if num_labels is None
            else rng.random((size, num_labels)) < 0.2)
  return {"tokens": tokens.astype(np.int32), "length": lengths, "label": labels.astype(np.int32)}


@pytest.mark.parametrize("name, overrides", [
    ("text_transformer", SMALL_TRANSFORMER), ("rnn", {"model.hidden": 32, "model.embed_dim": 16})])
def test_text_classifier_overfits_one_batch(name, overrides):
  config = text_config(name, **overrides, **{"optimizer.schedule": "constant",
                                             "optimizer.learning_rate": 1e-2,
                                             "optimizer.warmup_steps": 0,
                                             "data.text.vocab_size": 50})
  history = overfit(config, random_text_batch(None), 50)
  assert history[-1]["loss"] < 0.1 < history[0]["loss"]
  assert history[-1]["accuracy"] == 1.0


def test_multilabel_loss_falls_on_one_batch():
  config = text_config(arg="goemotions", **SMALL_TRANSFORMER,
                       **{"optimizer.schedule": "constant", "optimizer.learning_rate": 1e-2,
                          "optimizer.warmup_steps": 0, "data.text.vocab_size": 50})
  history = overfit(config, random_text_batch(28), 50)
  assert history[-1]["loss"] < 0.2 * history[0]["loss"]
  assert history[-1]["micro_f1"] > 0.9 and history[-1]["exact_match"] > 0.5


def test_multilabel_loss_and_f1_match_sklearn():
  logits = np.array([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2], [0.1, 0.3, -2.0], [1.0, 1.0, 1.0]],
                    np.float32)
  labels = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]], np.int32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(multilabel.sigmoid_loss(jnp.asarray(logits), labels), expected,
                             rtol=1e-5)

  predicted = (p > 0.5).astype(int)
  # On device: counts summed over two batches, the padding row (mask 0) left out.
  first = multilabel.MicroF1.from_model_output(
      true_positives=jnp.asarray((predicted * labels).sum(-1)[:2], jnp.float32),
      errors=jnp.asarray(np.abs(predicted - labels).sum(-1)[:2], jnp.float32))
  second = multilabel.MicroF1.from_model_output(
      true_positives=jnp.asarray((predicted * labels).sum(-1)[2:], jnp.float32),
      errors=jnp.asarray(np.abs(predicted - labels).sum(-1)[2:], jnp.float32),
      mask=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(float(first.merge(second).compute()),
                             sk_metrics.f1_score(labels[:3], predicted[:3], average="micro"),
                             rtol=1e-6)

  report = classification_eval.multilabel_report(p, labels, None, "test")
  for average in ("micro", "macro"):
    np.testing.assert_allclose(report[f"f1_{average}"], sk_metrics.f1_score(
        labels, predicted, average=average, zero_division=0))
  # Macro F1 by hand: per label 2TP / (2TP + FP + FN), 0 when the label is never involved.
  tp, errors_ = (predicted * labels).sum(0), np.abs(predicted - labels).sum(0)
  np.testing.assert_allclose(report["f1_macro"], np.mean(2 * tp / np.maximum(2 * tp + errors_, 1)))
  assert report["exact_match"] == sk_metrics.accuracy_score(labels, predicted) == 0.25


def test_trains_on_mock_goemotions_and_eval_reloads_the_tokenizer(mock_tfds, tmp_path):
  workdir = tmp_path / "run"
  config = text_config(arg="goemotions", **SMALL_TRANSFORMER, total_steps=4, batch_size=16,
                       eval_batch_size=32, log_every_steps=2, eval_every_steps=4,
                       checkpoint_every_steps=4)
  loop.train_and_evaluate(config, str(workdir))
  results = json.load(open(workdir / "results.json"))
  for key in ["test/f1_micro", "test/f1_macro", "test/micro_f1", "val/exact_match"]:
    assert 0 <= results[key] <= 1, key
  assert os.listdir(workdir / "reports") == ["test_per_label.csv"]
  spec = json.load(open(workdir / workdir_lib.INPUT_SPEC_FILE))
  assert spec["tokens"] == [[config.data.text.max_length], "int32"]
  assert spec["length"] == [[], "int32"] and spec["label"] == [[28], "int32"]
  tokenizer = (workdir / text.TOKENIZER_FILE).read_text()

  # Eval mode: the saved tokenizer is reused and the metrics repeat.
  again = modes.evaluate_checkpoint(config, str(workdir))
  assert (workdir / text.TOKENIZER_FILE).read_text() == tokenizer
  for key in ["test/f1_micro", "test/loss", "val/loss"]:
    assert again[key] == pytest.approx(results[key], rel=1e-5), key


@pytest.mark.parametrize("override, message", [
    ({"data.text.vocab_size": 2}, "data.text.vocab_size=2 is not allowed; it must be at least 3"),
    ({"data.text.max_length": 0}, "data.text.max_length=0 is not allowed"),
    ({"data.text.min_count": 0}, "data.text.min_count=0 is not allowed"),
    ({"data.text.feature": "txt"}, "data.text.feature='txt' is not allowed; it must be one of"),
    ({"data.text.labels": ("intnet",)}, "data.text.labels=('intnet',) is not allowed"),
    ({"task.inputs": ("image",)}, "task.inputs=('image',) is not allowed"),
])
def test_bad_text_fields_are_one_line_errors(override, message, tmp_path):
  config = text_config()
  validation.validate(config, str(tmp_path))  # the config as shipped is fine
  config.update_from_flattened_dict(override)
  with pytest.raises(errors.ConfigError) as e:
    validation.validate(config, str(tmp_path))
  assert message in str(e.value) and "\n" not in str(e.value)



def test_clinc_scores_its_out_of_scope_test_queries_with_a_threshold_from_in_scope_val():
  """The evaluation's fields (CLINC150 is not offline; mock data's intents exceed the
  150 classes; RunData's any_labels, which lets the out-of-scope label 150 through, is
  tested in test_data_faults.py)."""
  config = text_config()
  oos = config.evals.oos
  assert (oos.type, oos.data, oos.every_steps) == ("ood_report", "test", 0)
  assert oos.ood_sets.out_of_scope.data.split == "test_oos"
  assert oos.reference_data == "val" and oos.accept == 0.95  # in-scope validation only
  validation.validate(config, None)
