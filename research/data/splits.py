"""A run's data by name: its own splits (``train``, ``val``, ``test``) or any other dataset
an evaluation asks for, each read once, text encoded by the run's tokenizer.

    data = splits.RunData(config.data, workdir, batch_size=config.eval_batch_size)
    data.arrays("train")                                  # host numpy arrays
    data.batches("val", batch_sharding)                   # device-resident masked batches
    data.batches(ConfigDict(name="fashion_mnist", split="test"), batch_sharding)

A spec that is a ConfigDict changes those fields of the run's ``config.data`` (its
preprocessing, features and cache stay the run's unless named) and reads its ``split``.
"""
import json

import ml_collections

from research import errors
from research.core import sharding
from research.data import pipeline, text

OWN_SPLITS = ("train", "val", "test")


def spec_of(arrays: dict) -> dict[str, tuple[tuple[int, ...], str]]:
  """Per-example shape and dtype of each feature."""
  return {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in arrays.items()}


def check_spec(found: dict, trained: dict, workdir: str) -> None:
  """Data must have the shapes and dtypes the model in ``workdir`` was trained on."""
  for name, (shape, dtype) in found.items():
    if name in trained and (tuple(shape), dtype) != (tuple(trained[name][0]), trained[name][1]):
      raise errors.ConfigError(
          f"the data's {name} is {tuple(shape)} {dtype}, but the model in {workdir} was "
          f"trained on {tuple(trained[name][0])} {trained[name][1]}; use the dataset and "
          f"preprocessing it was trained with, or another --workdir")


class RunData:
  """``trained_spec``, when given, is what every dataset read must match (``check_spec``)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, eval_batch_size: int,
               trained_spec: dict | None = None):
    self.config, self.workdir, self.eval_batch_size = config, workdir, eval_batch_size
    self.trained_spec = trained_spec
    self._arrays, self._batches, self._encode = {}, {}, None

  def resolve(self, spec) -> tuple[ml_collections.ConfigDict, str, str]:
    """``(data config, split, field naming the split)`` of a spec."""
    if isinstance(spec, str):
      if spec not in OWN_SPLITS:
        raise errors.ConfigError(f"data spec {spec!r} is not allowed; it must be one of "
                                 f"{OWN_SPLITS} or a ConfigDict of data fields with a split")
      return self.config, self.config[f"{spec}_split"], f"{spec}_split"
    fields = spec.to_dict()
    if "split" not in fields:
      raise errors.ConfigError(f"data spec {fields} names no split")
    split = fields.pop("split")
    config = self.config.copy_and_resolve_references()
    unknown = sorted(set(fields) - set(config))
    if unknown:
      raise errors.ConfigError(f"data spec {spec.to_dict()}: no data field {unknown[0]!r}; "
                               f"the fields are {sorted(config)}")
    config.update(fields)
    return config, split, "split"

  def _key(self, spec) -> str:
    config, split, _ = self.resolve(spec)
    return json.dumps([json.loads(config.to_json_best_effort()), split], sort_keys=True)

  def arrays(self, spec) -> dict:
    """The whole split as host arrays (text encoded)."""
    key = self._key(spec)
    if key not in self._arrays:
      config, split, field = self.resolve(spec)
      raw = pipeline.load_split(config, split, field)
      if self._encode is None:  # the run's training texts build its tokenizer on a first run
        train_texts = raw[self.config.text.feature] if text.is_text(self.config) and \
            spec == "train" else None
        self._encode = text.encoder(self.config, self.workdir, train_texts)
      arrays = self._encode(raw)
      if self.trained_spec is not None:
        check_spec(spec_of(arrays), self.trained_spec, self.workdir)
      self._arrays[key] = arrays
    return self._arrays[key]

  def batches(self, spec, batch_sharding) -> list[dict]:
    """Fixed-size masked batches over the whole split, on the devices (research/data/pipeline.py
    ``eval_batches``)."""
    key = self._key(spec)
    if key not in self._batches:
      self._batches[key] = [sharding.to_global_array(b, batch_sharding) for b in
                            pipeline.eval_batches(self.arrays(spec), self.eval_batch_size)]
    return self._batches[key]
