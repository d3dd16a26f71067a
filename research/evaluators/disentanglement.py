"""Disentanglement of a latent-variable model's posterior means against the ground-truth
factors of its evaluation data (a dataset with a ``factors`` feature: ``dsprites_like``).

    config.evals.disentanglement = dict(type="disentanglement", data="val", final=True,
                                        every_steps=0)

MIG, SAP and DCI (``mig``, ``sap``, ``dci_disentanglement``, ``dci_completeness``,
``dci_informativeness``) are computed on the posterior means of the data's examples,
shuffled, the first ``num_train`` fitting the classifiers and the next ``num_test`` scoring
them (a split of fewer examples: two thirds and one third). On ``dsprites_like`` data the
FactorVAE and BetaVAE scores (``factor_vae_score``, ``beta_vae_score``: eval accuracies)
are added, from images rendered on the dataset's grid with one factor fixed:
``num_votes_train`` and ``num_votes_eval`` batches of ``batch_size`` (disentanglement_lib's
10,000, 5,000 and 64 by default: on a CPU, many minutes; 0 votes skips them). The
``factors`` feature is added to the data's features. ``PREFIX_dci_importance.csv`` in
``WORKDIR/reports`` holds the DCI importance matrix (a row per code dimension).
"""
import os

import jax
import ml_collections
import numpy as np

from research import errors
from research.core import sharding
from research.data import dsprites_like, pipeline
from research.evaluation import disentanglement
from research.evaluators import base
from research.tasks import base as tasks_base

DSPRITES_LIKE = "dsprites_like"


def with_factors(name: str, config: ml_collections.ConfigDict,
                 run_data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The evaluation's config with a data spec that reads the ``factors`` feature too."""
  fields = config.to_dict()
  spec = fields.get("data", "val")
  if isinstance(spec, str):
    errors.require(spec in ("train", "val", "test"), f"evals.{name}.data", spec,
                   "train, val or test")
    spec = {"split": run_data[f"{spec}_split"]}
  features = tuple(spec.get("features", run_data.features))
  fields["data"] = {**spec, "features": features + (() if "factors" in features else ("factors",))}
  return ml_collections.ConfigDict(fields)


def dsprites_like_grid(name: str) -> tuple[int, int] | None:
  """(orientation step, position step) of a ``dsprites_like[/CONFIG][:VERSION]`` dataset
  name; None for any other dataset."""
  dataset, _, config_name = name.split(":")[0].partition("/")
  if dataset != DSPRITES_LIKE:
    return None
  configs = {c.name: c for c in dsprites_like.DspritesLike.BUILDER_CONFIGS}
  chosen = configs.get(config_name or "full")
  errors.require(chosen is not None, "data.name", name, f"a config of {sorted(configs)}")
  return chosen.orientation_step, chosen.position_step


def split_rows(num: int, num_train: int, num_test: int, rng) -> tuple[np.ndarray, np.ndarray]:
  """Shuffled train and test rows of ``num`` examples (two thirds and a third when fewer
  than ``num_train + num_test``)."""
  order = rng.permutation(num)
  if num < num_train + num_test:
    num_train = 2 * num // 3
    num_test = num - num_train
  return order[:num_train], order[num_train:num_train + num_test]


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.LATENT})
  fields = {"num_train": 10000, "num_test": 5000, "batch_size": 64, "num_votes_train": 10000,
            "num_votes_eval": 5000, "num_variance": 10000, "prune_below": 0.05, "seed": 0}

  def __init__(self, name, config, context):
    run_data = context.task.config.data
    config = with_factors(name, config, run_data)
    super().__init__(name, config, context)
    encode = {"posterior": self.task.prediction("encode")}
    self.predict = base.predictions_fn(context, encode, keep=("factors",))
    self.encode = base.predictions_fn(context, encode)
    self.grid = dsprites_like_grid(config.data.get("name", run_data.name))
    self.eval_batch_size = context.task.config.eval_batch_size

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness")

  @classmethod
  def validate(cls, name, config, task_cls):
    super().validate(name, config, task_cls)
    for field in ("num_train", "num_test", "batch_size", "num_variance"):
      value = config.get(field, cls.fields[field])
      errors.require(isinstance(value, int) and value >= 2, f"evals.{name}.{field}", value,
                     "an integer >= 2")
    for field in ("num_votes_train", "num_votes_eval"):
      value = config.get(field, cls.fields[field])
      errors.require(isinstance(value, int) and value >= 0, f"evals.{name}.{field}", value,
                     "an integer >= 0 (0: no FactorVAE and BetaVAE scores)")

  def representation(self, state, images: np.ndarray) -> np.ndarray:
    """Posterior means of ``images`` (N, H, W, C) uint8, in batches of the run's devices."""
    devices = jax.device_count()
    size = min(self.eval_batch_size, -(-len(images) // devices) * devices)
    batches = [sharding.to_global_array(b, self.context.batch_sharding)
               for b in pipeline.eval_batches({"image": images}, size)]
    mean, _ = base.gather(self.encode, state, batches, self.context.rng)["posterior"]
    return np.asarray(mean, np.float64)

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng, self.name)
    codes, factors = np.asarray(out["posterior"][0], np.float64), np.asarray(out["factors"])
    rng = np.random.default_rng(self.option("seed"))
    train, test = split_rows(len(codes), self.option("num_train"), self.option("num_test"), rng)
    importance, _, informativeness = disentanglement.dci_importance(
        codes[train], factors[train], codes[test], factors[test], seed=self.option("seed"))
    dci_disentanglement, dci_completeness = disentanglement.dci_scores(importance)
    scalars = {
        "mig": disentanglement.mig(codes[train], factors[train]),
        "sap": disentanglement.sap(codes[train], factors[train], codes[test], factors[test]),
        "dci_disentanglement": dci_disentanglement, "dci_completeness": dci_completeness,
        "dci_informativeness": informativeness,
    }
    if self.grid is not None and self.option("num_votes_train") > 0:
      scalars.update(self.scores_on_rendered_images(state, factors.shape[1], rng))
    directory = self.context.report_dir(scope)
    if directory:
      names = (dsprites_like.FACTOR_NAMES if factors.shape[1] == len(dsprites_like.FACTOR_NAMES)
               else [f"factor_{k}" for k in range(factors.shape[1])])
      path = os.path.join(directory, f"{base.prefix(self.name, self.config)}_dci_importance.csv")
      np.savetxt(path, importance, delimiter=",", header=",".join(names), comments="")
    return base.Output(scalars)

  def scores_on_rendered_images(self, state, num_factors: int, rng) -> dict[str, float]:
    """FactorVAE and BetaVAE eval accuracies on images rendered on the dataset's grid."""
    sample_fixed = dsprites_like.sampler(*self.grid)
    represent = lambda images: self.representation(state, images)
    votes = dict(batch_size=self.option("batch_size"), num_train=self.option("num_votes_train"),
                 num_eval=max(self.option("num_votes_eval"), 1))
    factor_vae = disentanglement.factor_vae_score(
        sample_fixed, represent, num_factors, rng, num_variance=self.option("num_variance"),
        prune_below=self.option("prune_below"), **votes)
    beta_vae = disentanglement.beta_vae_score(sample_fixed, represent, num_factors, rng,
                                              seed=self.option("seed"), **votes)
    return {"factor_vae_score": factor_vae["eval_accuracy"],
            "factor_vae_active_dims": float(factor_vae["num_active_dims"]),
            "beta_vae_score": beta_vae["eval_accuracy"]}
