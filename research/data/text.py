"""Text features: a word-level tokenizer built from the training split, and the host-side
encoding of whole splits into fixed-length integer arrays.

A split holding ``config.text.feature`` (strings) becomes
  ``tokens``  int32 (max_length,): word ids, 0 (``<pad>``) after the text ends
  ``length``  int32 (): the number of valid tokens (the rest is padding)
  ``label``   int32 (): the class, from the one feature in ``config.text.labels``, or
              int32 (K,): a multi-hot vector of the K boolean features it names.
Encoding runs once when the splits are loaded, so the train step, the batching, the
sharding and the padded evaluation see plain integer arrays.

The tokenizer is saved as JSON (``WORKDIR/tokenizer.json``) on the first run and
reloaded by every later run in that workdir (resume, ``--mode=eval``): it is never
rebuilt from other data.
"""
import collections
import json
import os
import re

import jax
import ml_collections
import numpy as np

from research import errors

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
TOKENIZER_FILE = "tokenizer.json"
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str | bytes) -> list[str]:
  """Lower-cased words and punctuation marks of ``text``."""
  if isinstance(text, bytes):
    text = text.decode("utf-8")
  return _WORD.findall(text.lower())


class Tokenizer:
  """Maps words to ids: ``<pad>`` 0, ``<unk>`` 1, then the vocabulary."""

  def __init__(self, vocab: list[str], max_length: int):
    if vocab[:2] != [PAD, UNK]:
      raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {vocab[:2]}")
    self.vocab, self.max_length = list(vocab), max_length
    self.ids = {word: i for i, word in enumerate(self.vocab)}

  @classmethod
  def build(cls, texts, vocab_size: int, min_count: int, max_length: int) -> "Tokenizer":
    """The ``vocab_size - 2`` most frequent words of ``texts`` seen at least ``min_count``
    times (ties broken alphabetically, so the vocabulary is deterministic)."""
    counts = collections.Counter(w for text in texts for w in words(text))
    ranked = sorted((w for w, c in counts.items() if c >= min_count),
                    key=lambda w: (-counts[w], w))
    return cls([PAD, UNK] + ranked[:vocab_size - 2], max_length)

  def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (N, max_length), truncated or padded with 0, and valid lengths (N,)."""
    tokens = np.zeros((len(texts), self.max_length), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    unk = self.ids[UNK]
    for i, text in enumerate(texts):
      ids = [self.ids.get(w, unk) for w in words(text)][:self.max_length]
      tokens[i, :len(ids)], lengths[i] = ids, len(ids)
    return tokens, lengths

  def to_json(self, settings: dict) -> str:
    return json.dumps({"settings": settings, "max_length": self.max_length,
                       "vocab": self.vocab}, ensure_ascii=False)

  @classmethod
  def from_json(cls, text: str) -> tuple["Tokenizer", dict]:
    data = json.loads(text)
    return cls(data["vocab"], data["max_length"]), data["settings"]


def settings(config: ml_collections.ConfigDict) -> dict:
  """What the tokenizer was built from; a saved tokenizer must match these."""
  text = config.text
  return {"dataset": config.name, "train_split": config.train_split, "feature": text.feature,
          "vocab_size": text.vocab_size, "min_count": text.min_count,
          "max_length": text.max_length}


def load_or_build(config: ml_collections.ConfigDict, train_texts, workdir: str) -> Tokenizer:
  """The workdir's tokenizer; on a first run, built from ``train_texts`` and saved."""
  path = os.path.join(workdir, TOKENIZER_FILE)
  wanted = settings(config)
  if os.path.exists(path):
    with open(path) as f:
      tokenizer, saved = Tokenizer.from_json(f.read())
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
    if changed:
      raise errors.ConfigError(
          f"{path} was built with {', '.join(f'{k}={saved.get(k)!r}' for k in changed)}, but "
          f"the config asks for {', '.join(f'{k}={wanted[k]!r}' for k in changed)}; use the "
          f"settings it was trained with, or another --workdir")
    return tokenizer
  if train_texts is None:
    raise errors.UserError(f"no {TOKENIZER_FILE} in {workdir}: the run that trained there "
                           f"did not finish its first start")
  text = config.text
  tokenizer = Tokenizer.build(train_texts, text.vocab_size, text.min_count, text.max_length)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      f.write(tokenizer.to_json(wanted))
  return tokenizer


def labels(arrays: dict[str, np.ndarray], names) -> np.ndarray:
  """One feature's class ids, or several boolean features stacked as multi-hot (N, K)."""
  if len(names) == 1:
    return arrays[names[0]].astype(np.int32)
  return np.stack([arrays[n] for n in names], axis=-1).astype(np.int32)


def encode_split(tokenizer: Tokenizer, arrays: dict[str, np.ndarray],
                 config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  tokens, lengths = tokenizer.encode(arrays[config.text.feature])
  return {"tokens": tokens, "length": lengths, "label": labels(arrays, config.text.labels)}


def is_text(config: ml_collections.ConfigDict) -> bool:
  """Whether the data config (``config.data``) reads text."""
  return "text" in config and bool(config.text.feature)


def encoder(config: ml_collections.ConfigDict, workdir: str, train_texts=None):
  """``encode(raw_arrays) -> arrays`` with the workdir's tokenizer, built from ``train_texts``
  (and saved) on a first run; the identity when ``config`` (``config.data``) reads no text.
  Without ``train_texts`` (a restored run) the tokenizer must be in the workdir."""
  if not is_text(config):
    return lambda arrays: arrays
  tokenizer = load_or_build(config, train_texts, workdir)
  return lambda arrays: encode_split(tokenizer, arrays, config)


def encode_splits(config: ml_collections.ConfigDict, splits: dict[str, dict],
                  workdir: str) -> dict[str, dict]:
  """``splits`` (name -> raw arrays, with ``train``) encoded by ``encoder``."""
  if not is_text(config):
    return splits
  encode = encoder(config, workdir, splits["train"][config.text.feature])
  return {name: encode(arrays) for name, arrays in splits.items()}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """The text fields (``config.data.text``) of a config that reads a text dataset."""
  if not is_text(config.data):
    return
  data, spec = config.data, config.data.text
  errors.require(spec.feature in data.features, "data.text.feature", spec.feature,
                 f"one of data.features {tuple(data.features)}")
  errors.require(len(spec.labels) > 0 and all(n in data.features for n in spec.labels),
                 "data.text.labels", tuple(spec.labels),
                 f"one or more of data.features {tuple(data.features)}")
  errors.require(spec.vocab_size >= 3, "data.text.vocab_size", spec.vocab_size,
                 "at least 3 (<pad>, <unk> and one word)")
  errors.require(spec.min_count >= 1, "data.text.min_count", spec.min_count, "a positive integer")
  errors.require(spec.max_length >= 1, "data.text.max_length", spec.max_length, "a positive integer")
  inputs = tuple(config.task.get("inputs", ("image",)))
  errors.require(set(inputs) <= {"tokens", "length"}, "task.inputs", inputs,
                 "drawn from ('tokens', 'length'): what a text dataset feeds the model")
  vocab = config.model.get("vocab_size", spec.vocab_size)
  errors.require(vocab >= spec.vocab_size, "model.vocab_size", vocab,
                 f"at least data.text.vocab_size={spec.vocab_size}")
