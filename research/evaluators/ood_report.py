"""What a model knows it does not know: how well its scores (higher = more out-of-
distribution, research/evaluation/ood.py) separate its in-distribution split (``data``;
set ``data="test"``) from an OOD one (``ood_data``):

  classifier  msp (-max softmax probability), energy (-T logsumexp(logits / T)) and
              mahalanobis (the closest class mean under a tied covariance, fitted on the
              penultimate features of ``train_data``)
  latent      neg_elbo (nats), complexity_elbo (-ELBO in bits minus the PNG length L(x) of
              the uint8 image); with ``num_samples`` > 0 also nll (importance-sampled -log
              p(x), research/evaluators/likelihood.py) and complexity_nll

For each score S: ``auroc_S``, ``aupr_in_S``, ``aupr_out_S`` and ``fpr95_S`` (the fraction of
in-distribution examples flagged at the threshold that detects 95% of the OOD ones), and
every example's scores in ``WORKDIR/reports/PREFIX_ood_scores.csv``. Fields:

    ood_data        a split of the run's data or a ConfigDict of data fields with a split
                    (e.g. dict(name="fashion_mnist", split="test")); required
    ood_preprocess  preprocessing ops (research/data/preprocess.py) applied to the raw OOD
                    batches before the run's own: e.g. "flip_vertical", or "scale(255, 0)",
                    which inverts uint8 images (x -> 255 - x)
    train_data      the split the Mahalanobis Gaussians are fitted on (classifiers)
    temperature     T of the energy score
    num_samples     importance samples of the latent model's nll (0: no nll scores)
    chunk           samples drawn at a time (a divisor of num_samples)
"""
import csv
import dataclasses
import os

import jax
import ml_collections
import numpy as np

from research import errors
from research.data import preprocess as preprocess_lib
from research.evaluation import ood
from research.evaluators import base
from research.tasks import base as tasks_base

METRICS = (("auroc", "auroc"), ("aupr_in", "aupr_in"), ("aupr_out", "aupr_out"),
           ("fpr95", "fpr_at_95_tpr"))  # (scalar name, ood.ood_metrics key)
CLASSIFIER_SCORES = ("msp", "energy", "mahalanobis")
LATENT_SCORES = ("neg_elbo", "complexity_elbo")
NLL_SCORES = ("nll", "complexity_nll")
RAW_IMAGE = "ood_raw_image"  # the batch's image before the run's preprocessing


def score_names(config: ml_collections.ConfigDict, task_cls) -> tuple[str, ...]:
  if tasks_base.CLASSIFIER in task_cls.capabilities:
    return CLASSIFIER_SCORES
  return LATENT_SCORES + (NLL_SCORES if config.get("num_samples", 0) else ())


def uint8_images(images: np.ndarray) -> np.ndarray:
  """Raw images as uint8 (an OOD op such as ``scale(255, 0)`` leaves them float in [0, 255])."""
  if images.dtype == np.uint8:
    return images
  return np.clip(np.rint(images), 0, 255).astype(np.uint8)


class Evaluator(base.Evaluator):
  fields = {"ood_data": None, "ood_preprocess": "", "train_data": "train", "temperature": 1.0,
            "num_samples": 0, "chunk": 50}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.classifier = tasks_base.CLASSIFIER in self.task.capabilities
    shift = preprocess_lib.parse(self.option("ood_preprocess"))
    self.ood_batches = context.load(self.option("ood_data"))
    fns, keep = self.prediction_fns()
    self.predict = base.predictions_fn(self.shifted(lambda batch, rng: batch), fns, keep)
    self.predict_ood = base.predictions_fn(self.shifted(shift), fns, keep)
    if self.classifier:
      self.train_batches = context.load(self.option("train_data"))
      self.predict_train = base.predictions_fn(
          context, {"features": self.task.prediction("features")}, keep=("label",))

  def shifted(self, shift) -> base.Context:
    """The context whose preprocessing applies ``shift`` to the raw batch, then the run's
    preprocessing, and keeps the shifted raw image as RAW_IMAGE."""
    run_preprocess = self.context.preprocess

    def apply(batch, rng):
      batch = shift(batch, jax.random.fold_in(rng, 1))
      out = run_preprocess(batch, rng)
      return {**out, RAW_IMAGE: batch["image"]} if "image" in batch else out

    return dataclasses.replace(self.context, preprocess=apply)

  def prediction_fns(self) -> tuple[dict, tuple[str, ...]]:
    """The jitted per-batch scores, and the batch features kept beside them."""
    if self.classifier:
      logits, temperature = self.task.prediction("logits"), self.option("temperature")

      def scores(*args):
        out = logits(*args)
        return {"msp": ood.msp_score(out), "energy": ood.energy_score(out, temperature)}

      return {"scores": scores, "features": self.task.prediction("features")}, ()
    elbo = self.task.prediction("elbo")
    fns = {"scores": lambda *args: {"neg_elbo": -elbo(*args)}}
    k, chunk = self.option("num_samples"), self.option("chunk")
    if k:
      nll = self.task.prediction("nll")
      fns["nll"] = lambda *args: nll(*args, k, chunk)
    return fns, (RAW_IMAGE,)

  @classmethod
  def validate(cls, name, config, task_cls):
    super().validate(name, config, task_cls)
    require = errors.require
    require(bool({tasks_base.CLASSIFIER, tasks_base.LATENT} & set(task_cls.capabilities)),
            f"evals.{name}.type", config.type,
            f"an evaluator this task can feed (task {task_cls.__module__} is neither a "
            f"classifier nor a latent-variable model)")
    for field in ("ood_data", "train_data"):
      data = config.get(field, cls.fields[field])
      require(data in ("train", "val", "test")
              or (isinstance(data, ml_collections.ConfigDict) and "split" in data),
              f"evals.{name}.{field}", data,
              "train, val, test or a ConfigDict of data fields with a split")
    spec = config.get("ood_preprocess", "")
    require(isinstance(spec, str), f"evals.{name}.ood_preprocess", spec,
            "a string of preprocessing ops")
    try:
      preprocess_lib.parse(spec)
    except errors.ConfigError as e:
      raise errors.ConfigError(f"evals.{name}.ood_preprocess={spec!r}: {e}") from None
    temperature = config.get("temperature", 1.0)
    require(isinstance(temperature, (int, float)) and temperature > 0,
            f"evals.{name}.temperature", temperature, "a positive number")
    k, chunk = config.get("num_samples", 0), config.get("chunk", 50)
    require(isinstance(chunk, int) and chunk >= 1, f"evals.{name}.chunk", chunk,
            "a positive integer")
    require(isinstance(k, int) and k >= 0 and k % chunk == 0, f"evals.{name}.num_samples", k,
            f"0 (no nll scores) or a multiple of evals.{name}.chunk={chunk}")

  @classmethod
  def metric_names(cls, config, task_cls):
    return tuple(f"{metric}_{score}" for score in score_names(config, task_cls)
                 for metric, _ in METRICS)

  def scores(self, state, predict, batches, name: str, fitted) -> dict[str, np.ndarray]:
    """Every score of one set's examples."""
    out = base.gather(predict, state, batches, self.context.rng, name=f"{self.name} ({name})")
    scores = dict(out["scores"])
    if self.classifier:
      scores["mahalanobis"] = ood.mahalanobis_score(fitted, out["features"])
      return scores
    complexity = ood.input_complexity_bits(uint8_images(out[RAW_IMAGE]))
    scores["complexity_elbo"] = ood.complexity_corrected_score(
        ood.nats_to_bits(scores["neg_elbo"]), complexity)
    if "nll" in out:
      scores["nll"] = out["nll"]
      scores["complexity_nll"] = ood.complexity_corrected_score(ood.nats_to_bits(out["nll"]),
                                                                complexity)
    return scores

  def fit(self, state) -> ood.GaussianFit | None:
    """The Mahalanobis Gaussians of ``train_data``'s features (classifiers)."""
    if not self.classifier:
      return None
    train = base.gather(self.predict_train, state, self.train_batches, self.context.rng,
                        name=f"{self.name} (train features)")
    return ood.fit_gaussian(train["features"], train["label"], int(train["label"].max()) + 1)

  def run(self, state, step, scope):
    fitted = self.fit(state)
    sets = {"in": self.scores(state, self.predict, self.batches, "in-distribution", fitted),
            "ood": self.scores(state, self.predict_ood, self.ood_batches, "OOD", fitted)}
    names = score_names(self.config, type(self.task))
    scalars = {}
    for score in names:
      metrics = ood.ood_metrics(sets["in"][score], sets["ood"][score])
      scalars.update({f"{metric}_{score}": metrics[key] for metric, key in METRICS})
    directory = self.context.report_dir(scope)
    if directory is not None:
      with open(os.path.join(directory, f"{base.prefix(self.name, self.config)}_ood_scores.csv"),
                "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", *names])
        for label, scores in sets.items():
          writer.writerows([label, *(float(v) for v in row)]
                           for row in zip(*(scores[n] for n in names)))
    return base.Output(scalars)
