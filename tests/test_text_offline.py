"""The text configs' offline run: the generated intent corpus (research/data/synthetic_intents.py)
is deterministic, holds its templates out of validation and test, has the features and splits
the text configs read, and trains them end to end (the launcher, and in-process runs)."""
import collections
import importlib
import json
import os

import numpy as np
import pytest

from configs import common
from research.data import pipeline, text
from research.data import synthetic_intents as si
from research.train import loop
from tests.conftest import load_config, run_launcher, stderr_summary

SMALL_TRANSFORMER = {"model.hidden": 32, "model.mlp_dim": 64, "model.depth": 1,
                     "model.num_heads": 2}
SPLITS = ("train", "validation", "test")


@pytest.mark.parametrize("multi", [False, True])
def test_corpus_is_deterministic_and_holds_out_its_templates(multi):
  sizes = si.MULTI_SPLIT_SIZES if multi else si.SPLIT_SIZES
  corpus = {split: si.generate(split, multi) for split in SPLITS}
  assert {split: len(examples) for split, examples in corpus.items()} == sizes
  assert si.generate("test", multi) == corpus["test"]  # the same examples on every call
  training = {t for templates, _ in si.INTENTS.values() for t in templates}
  held_out = {t for _, templates in si.INTENTS.values() for t in templates}
  assert not training & held_out
  for split, examples in corpus.items():
    used = {t for e in examples for t in e.templates}
    assert used <= (training if split == "train" else held_out), split
  train_texts = {e.text for e in corpus["train"]}
  assert not any(e.text in train_texts for e in corpus["test"] + corpus["validation"])

  spec = common.TEXT_DATASETS["synthetic_multi_intents" if multi else "synthetic_intents"]
  counts = collections.Counter(len(e.labels) for e in corpus["train"])
  if multi:
    assert set(counts) == {1, 2, 3} and spec["labels"] == si.INTENT_NAMES
  else:
    assert set(counts) == {1} and spec["labels"] == ("intent",)
    per_intent = collections.Counter(e.labels[0] for e in corpus["train"])
    assert set(per_intent.values()) == {sizes["train"] // len(si.INTENT_NAMES)}
  assert common.SYNTHETIC_INTENTS == si.INTENT_NAMES and spec["num_classes"] == 15
  assert max(len(text.words(e.text)) for es in corpus.values() for e in es) <= spec["max_length"]


@pytest.mark.parametrize("name, arg", [("text_transformer", "synthetic_intents"),
                                       ("rnn", "synthetic_multi_intents")])
def test_prepared_datasets_hold_what_the_text_configs_read(name, arg, data_dir):
  config = load_config(name, arg, data_dir=data_dir)
  assert config.data.name == arg and config.gate == ""
  multi = arg == "synthetic_multi_intents"
  for field, split in zip(("train_split", "val_split", "test_split"), SPLITS):
    arrays = pipeline.load_split(config.data, config.data[field], field)
    labels = text.labels(arrays, config.data.text.labels)
    found = sorted((t.decode(), tuple(np.flatnonzero(y)) if multi else (int(y),))
                   for t, y in zip(arrays["text"], labels))
    assert found == sorted((e.text, e.labels) for e in si.generate(split, multi)), split


def test_image_datasets_on_text_configs_and_missing_text_data_point_offline(tmp_path):
  config = importlib.import_module("configs.text_transformer")
  with pytest.raises(ValueError, match="text_transformer:synthetic_intents") as e:
    config.get_config("digits")
  assert "\n" not in str(e.value)
  clinc = load_config("text_transformer", "clinc_oos", data_dir=str(tmp_path),
                      **{"data.download": False})
  with pytest.raises(pipeline.DatasetUnavailableError, match="NAME:synthetic_intents"):
    pipeline.load_split(clinc.data, "train")


def train_losses(workdir) -> list[float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [row["train/loss"] for row in map(json.loads, f) if "train/loss" in row]


def test_text_transformer_trains_offline_through_the_launcher(data_dir, tmp_path):
  workdir = tmp_path / "run"
  small = [f"--config.{k}={v}" for k, v in SMALL_TRANSFORMER.items()]
  proc = run_launcher("--config=text_transformer:synthetic_intents", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=60",
                      "--config.log_every_steps=10", "--config.eval_every_steps=60",
                      "--config.checkpoint_every_steps=60",
                      "--config.optimizer.learning_rate=0.01", *small)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  results = json.load(open(workdir / "results.json"))
  assert results["test/accuracy"] > 0.4, results  # chance: 1/15; measured 0.78
  losses = train_losses(workdir)
  assert losses[-1] < 0.8 * losses[0], losses
  assert sorted(os.listdir(workdir / "reports")) == [
      "test_confusion.png", "test_per_class.csv", "test_reliability.png"]


@pytest.mark.parametrize("name, arg, overrides, metric, above", [
    ("rnn", "synthetic_intents", {"model.hidden": 32, "model.embed_dim": 32,
                                  "total_steps": 60}, "test/accuracy", 0.25),  # measured 0.54
    ("text_transformer", "synthetic_multi_intents",
     {**SMALL_TRANSFORMER, "optimizer.learning_rate": 1e-2, "total_steps": 100},
     "test/micro_f1", 0.4),  # measured 0.74
])
def test_text_configs_learn_the_generated_corpus(name, arg, overrides, metric, above,
                                                 data_dir, tmp_path):
  config = load_config(name, arg, data_dir=data_dir, eval_every_steps=50,
                       checkpoint_every_steps=50, **overrides)
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert results[metric] > above, results
  losses = train_losses(tmp_path)
  assert losses[-1] < 0.8 * losses[0], losses
