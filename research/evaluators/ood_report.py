"""What a model knows it does not know: how well its scores (higher = more out-of-
distribution, research/evaluation/ood.py) separate its in-distribution split (``data``;
set ``data="test"``) from each of its OOD sets (``ood_sets``):

  classifier  msp (-max softmax probability), energy (-T logsumexp(logits / T)) and
              mahalanobis (the closest class mean under a tied covariance, fitted on the
              penultimate features of ``train_data``)
  latent      neg_elbo (nats), complexity_elbo (-ELBO in bits minus L(x), the PNG length of
              the image the model scores: binarized pixels for a Bernoulli decoder); with
              ``num_samples`` > 0 also nll (importance-sampled -log p(x),
              research/evaluators/likelihood.py) and complexity_nll; with
              ``regret_steps`` > 0 also regret (likelihood regret, Xiao et al. 2020:
              research/tasks/vae.py:Task.regret) on the first ``regret_examples`` of
              every set (whole evaluation batches), as a posterior fitted per image
              costs ``regret_steps`` ELBOs of it
  one-class   anomaly (the model's own score: an autoencoder's reconstruction error, Deep
              SVDD's distance to its centre; research/tasks/one_class.py)
  OC-SVM      with ``ocsvm`` naming features: ocsvm_latent (a latent model's posterior
              means) and ocsvm_pixels (the pixels the model sees, any model), the
              anomaly score of scikit-learn's OneClassSVM on their PCA features fitted on
              the first ``ocsvm_examples`` of ``train_data``
              (research/evaluation/one_class.py)

For each OOD set NAME and score S: ``NAME/auroc_S``, ``NAME/aupr_in_S``, ``NAME/aupr_out_S``
and ``NAME/fpr95_S`` (the fraction of in-distribution examples flagged at the threshold that
detects 95% of the OOD ones). A threshold chosen without OOD data, the one that accepts
``accept`` of ``reference_data`` (held-out in-distribution data, by default val), gives
``NAME/recall_at_accept_S`` (the OOD examples it flags) and ``flagged_at_accept_S`` (the
in-distribution test examples it flags, ~1 - accept). Latent models also run the
typicality test (Nalisnick et al. 2019) on batches of ``typicality_batch`` examples for
neg_elbo (and nll): the entropy is the mean score of the first half of ``reference_data``,
the threshold is bootstrapped from its second half, and
``NAME/typicality_auroc_S`` (batches ranked by their typicality score),
``NAME/typicality_tpr_S`` (OOD batches flagged) and ``typicality_fpr_S`` (in-distribution
batches flagged) are reported. Every example's scores go to
``WORKDIR/reports/PREFIX_ood_scores.csv`` (column ``set``: in, reference or the OOD set's
name), in the order of the splits. Fields:

    ood_sets          NAME -> dict(data=..., preprocess=""): ``data`` a split of the run's
                      data or a ConfigDict of data fields with a split (e.g.
                      dict(name="fashion_mnist", split="test")); ``preprocess`` ops
                      (research/data/preprocess.py) applied to the raw batches before the
                      run's own: e.g. "flip_vertical", or "scale(255, 0)", which inverts
                      uint8 images (x -> 255 - x); required, at least one
    train_data        the split the Mahalanobis Gaussians (classifiers) and the OC-SVMs
                      are fitted on
    ocsvm             the OC-SVMs' features: a tuple of latent, pixels (): none)
    ocsvm_examples, ocsvm_components, ocsvm_nu
                      the OC-SVMs' training examples, PCA components and nu (gamma:
                      scikit-learn's "scale")
    temperature       T of the energy score
    num_samples       importance samples of the latent model's nll (0: no nll scores)
    chunk             samples drawn at a time (a divisor of num_samples)
    reference_data    held-out in-distribution data: the acceptance threshold's and the
                      typicality test's ("": neither)
    accept            the fraction of reference_data the acceptance threshold accepts
    typicality_batch  M, the examples per batch of the typicality test
    regret_steps      Adam steps of the likelihood regret's per-image fit (0: no regret)
    regret_learning_rate, regret_fit_samples, regret_samples
                      its step size, samples per step, samples of its two final ELBOs
    regret_examples   the examples of each set scored by the regret (it costs ~steps ELBOs)
"""
import csv
import os

import jax
import ml_collections
import numpy as np

from research import errors
from research.data import preprocess as preprocess_lib
from research.evaluation import one_class as one_class_lib
from research.evaluation import ood
from research.evaluators import base
from research.tasks import base as tasks_base
from research.tasks import one_class

METRICS = (("auroc", "auroc"), ("aupr_in", "aupr_in"), ("aupr_out", "aupr_out"),
           ("fpr95", "fpr_at_95_tpr"))  # (scalar name, ood.ood_metrics key)
CLASSIFIER_SCORES = ("msp", "energy", "mahalanobis")
LATENT_SCORES = ("neg_elbo", "complexity_elbo")
NLL_SCORES = ("nll", "complexity_nll")
ANOMALY_SCORES = ("anomaly",)
OCSVM_FEATURES = ("latent", "pixels")  # ocsvm_latent: posterior means; ocsvm_pixels
TYPICALITY_SCORES = ("neg_elbo", "nll")  # the typicality test's statistics, when computed
IN, REFERENCE = "in", "reference"  # the CSV's names of the in-distribution sets
ONLY_ON_SUBSETS = ("regret",)  # scores of each set's first examples, none of the reference


def kind(task_cls) -> str:
  """Which scores a task's model gives: classifier, latent or anomaly."""
  for capability in (tasks_base.CLASSIFIER, tasks_base.LATENT, one_class.ANOMALY):
    if capability in task_cls.capabilities:
      return capability
  return ""


def score_names(config: ml_collections.ConfigDict, task_cls) -> tuple[str, ...]:
  ocsvm = tuple(f"ocsvm_{f}" for f in OCSVM_FEATURES if f in tuple(config.get("ocsvm", ())))
  if kind(task_cls) == tasks_base.CLASSIFIER:
    return CLASSIFIER_SCORES + ocsvm
  if kind(task_cls) == one_class.ANOMALY:
    return ANOMALY_SCORES + ocsvm
  return (LATENT_SCORES + (NLL_SCORES if config.get("num_samples", 0) else ())
          + (("regret",) if config.get("regret_steps", 0) else ()) + ocsvm)


def typicality_scores(config: ml_collections.ConfigDict, task_cls) -> tuple[str, ...]:
  if kind(task_cls) != tasks_base.LATENT or not config.get("reference_data", "val"):
    return ()  # only a likelihood has an entropy to compare a batch with
  return tuple(s for s in TYPICALITY_SCORES if s in score_names(config, task_cls))


def uint8_images(images: np.ndarray) -> np.ndarray:
  """The model's input images in [0, 1] as the uint8 grey levels 0..255 they stand for."""
  images = np.asarray(images)
  if images.min() < 0.0 or images.max() > 1.0:
    raise errors.ConfigError(
        f"ood_report's complexity scores need images in [0, 1] after preprocessing; they span "
        f"[{images.min():.3g}, {images.max():.3g}] (data.preprocess)")
  return np.rint(images * 255.0).astype(np.uint8)


class Evaluator(base.Evaluator):
  fields = {"ood_sets": None, "train_data": "train", "temperature": 1.0, "num_samples": 0,
            "chunk": 10, "reference_data": "val", "accept": 0.95, "typicality_batch": 10,
            "regret_steps": 0, "regret_learning_rate": 0.02, "regret_fit_samples": 1,
            "regret_samples": 32, "regret_examples": 2000, "ocsvm": (),
            "ocsvm_examples": 10000, "ocsvm_components": 50, "ocsvm_nu": 0.1}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.kind = kind(type(self.task))
    self.classifier = self.kind == tasks_base.CLASSIFIER
    self.ocsvm = tuple(self.option("ocsvm"))
    fns, keep = self.prediction_fns()
    self.predict = base.predictions_fn(context, fns, keep)
    self.regret = self.regret_fn(context) if self.option("regret_steps") else None
    self.ood = {}  # set name -> (predict, regret, batches)
    for set_name, spec in self.option("ood_sets").items():
      shifted = base.shifted(context, preprocess_lib.parse(spec.get("preprocess", "")))
      self.ood[set_name] = (base.predictions_fn(shifted, fns, keep),
                            self.regret_fn(shifted) if self.regret else None,
                            context.load(spec.data, any_labels=True))
    self.typicality = typicality_scores(config, type(self.task))
    self.reference_batches = (context.load(self.option("reference_data"))
                              if self.option("reference_data") else None)
    if self.classifier or self.ocsvm:
      self.train_batches = context.load(self.option("train_data"))
    if self.classifier:
      self.predict_train = base.predictions_fn(
          context, {"features": self.task.prediction("features")}, keep=("label",))
    if self.ocsvm:
      self.predict_ocsvm_train = base.predictions_fn(
          context, {k: v for k, v in fns.items() if k == "posterior_mean"},
          keep=("image",) if "pixels" in self.ocsvm else ())

  def prediction_fns(self) -> tuple[dict, tuple[str, ...]]:
    """The jitted per-batch scores, and the batch features kept beside them: the image
    the model scores, for a latent model's complexity and for ocsvm_pixels."""
    keep = ("image",) if "pixels" in self.ocsvm else ()
    if self.classifier:
      logits, temperature = self.task.prediction("logits"), self.option("temperature")

      def scores(*args):
        out = logits(*args)
        return {"msp": ood.msp_score(out), "energy": ood.energy_score(out, temperature)}

      return {"scores": scores, "features": self.task.prediction("features")}, keep
    if self.kind == one_class.ANOMALY:
      score = self.task.prediction("score")
      return {"scores": lambda *args: {"anomaly": score(*args)}}, keep
    elbo = self.task.prediction("elbo")
    fns = {"scores": lambda *args: {"neg_elbo": -elbo(*args)}}
    k, chunk = self.option("num_samples"), self.option("chunk")
    if k:
      nll = self.task.prediction("nll")
      fns["nll"] = lambda *args: nll(*args, k, chunk)
    if "latent" in self.ocsvm:
      encode = self.task.prediction("encode")
      fns["posterior_mean"] = lambda *args: encode(*args)[0]
    return fns, ("image",)

  def regret_fn(self, context: base.Context):
    regret = self.task.prediction("regret")
    options = dict(steps=self.option("regret_steps"),
                   learning_rate=self.option("regret_learning_rate"),
                   fit_samples=self.option("regret_fit_samples"),
                   num_samples=self.option("regret_samples"))
    return base.predictions_fn(context, {"regret": lambda *args: regret(*args, **options)})

  @classmethod
  def validate(cls, name, config, task_cls):
    super().validate(name, config, task_cls)
    require = errors.require
    require(bool(kind(task_cls)), f"evals.{name}.type", config.type,
            f"an evaluator this task can feed (task {task_cls.__module__} is neither a "
            f"classifier, a latent-variable model nor a one-class model)")
    ocsvm = config.get("ocsvm", ())
    require(isinstance(ocsvm, tuple) and set(ocsvm) <= set(OCSVM_FEATURES)
            and ("latent" not in ocsvm or kind(task_cls) == tasks_base.LATENT),
            f"evals.{name}.ocsvm", ocsvm,
            "a tuple of the OC-SVMs' features: pixels, and latent for a latent model")
    nu = config.get("ocsvm_nu", 0.1)
    require(isinstance(nu, float) and 0.0 < nu <= 1.0, f"evals.{name}.ocsvm_nu", nu,
            "a fraction in (0, 1], the SVM's bound on training outliers")
    sets = config.get("ood_sets")
    require(isinstance(sets, ml_collections.ConfigDict) and len(sets) > 0,
            f"evals.{name}.ood_sets", sets,
            "a ConfigDict of OOD sets, NAME=dict(data=..., preprocess=...)")
    for set_name, spec in sets.items():
      field = f"evals.{name}.ood_sets.{set_name}"
      require(isinstance(spec, ml_collections.ConfigDict) and "data" in spec
              and not set(spec) - {"data", "preprocess"}, field, spec,
              "dict(data=..., preprocess=...)")
      cls.validate_data(f"{field}.data", spec.data)
      preprocess = spec.get("preprocess", "")
      require(isinstance(preprocess, str), f"{field}.preprocess", preprocess,
              "a string of preprocessing ops")
      try:
        preprocess_lib.parse(preprocess)
      except errors.ConfigError as e:
        raise errors.ConfigError(f"{field}.preprocess={preprocess!r}: {e}") from None
    cls.validate_data(f"evals.{name}.train_data", config.get("train_data", "train"))
    reference = config.get("reference_data", "val")
    if reference != "":
      cls.validate_data(f"evals.{name}.reference_data", reference)
    accept = config.get("accept", 0.95)
    require(isinstance(accept, float) and 0.0 < accept < 1.0, f"evals.{name}.accept", accept,
            "a fraction between 0 and 1, e.g. 0.95")
    temperature = config.get("temperature", 1.0)
    require(isinstance(temperature, (int, float)) and temperature > 0,
            f"evals.{name}.temperature", temperature, "a positive number")
    k, chunk = config.get("num_samples", 0), config.get("chunk", 10)
    require(isinstance(chunk, int) and chunk >= 1, f"evals.{name}.chunk", chunk,
            "a positive integer")
    require(isinstance(k, int) and k >= 0 and k % chunk == 0, f"evals.{name}.num_samples", k,
            f"0 (no nll scores) or a multiple of evals.{name}.chunk={chunk}")
    for field in ("typicality_batch", "regret_fit_samples", "regret_samples", "regret_examples",
                  "ocsvm_examples", "ocsvm_components"):
      value = config.get(field, cls.fields[field])
      require(isinstance(value, int) and value >= 1, f"evals.{name}.{field}", value,
              "a positive integer")
    steps = config.get("regret_steps", 0)
    require(isinstance(steps, int) and steps >= 0, f"evals.{name}.regret_steps", steps,
            "0 (no regret) or a positive number of steps")
    require(not steps or tasks_base.LATENT in task_cls.capabilities, f"evals.{name}.regret_steps",
            steps, "0 for a model without a posterior")

  @staticmethod
  def validate_data(field: str, data) -> None:
    errors.require(data in ("train", "val", "test")
                   or (isinstance(data, ml_collections.ConfigDict) and "split" in data),
                   field, data, "train, val, test or a ConfigDict of data fields with a split")

  @classmethod
  def metric_names(cls, config, task_cls):
    scores, typical = score_names(config, task_cls), typicality_scores(config, task_cls)
    accepting = (tuple(s for s in scores if s not in ONLY_ON_SUBSETS)
                 if config.get("reference_data", "val") else ())
    names = []
    for set_name in config.ood_sets:
      names += [f"{set_name}/{metric}_{score}" for score in scores for metric, _ in METRICS]
      names += [f"{set_name}/recall_at_accept_{score}" for score in accepting]
      names += [f"{set_name}/typicality_{m}_{score}" for score in typical for m in ("auroc", "tpr")]
    names += [f"flagged_at_accept_{score}" for score in accepting]
    names += [f"typicality_fpr_{score}" for score in typical]
    return tuple(names)

  def scores(self, state, predict, batches, name: str, fitted,
             regret=None) -> dict[str, np.ndarray]:
    """Every score of one set's examples (the regret of its first ones)."""
    out = base.gather(predict, state, batches, self.context.rng, name=f"{self.name} ({name})")
    scores = dict(out["scores"])
    if regret is not None:
      subset = first_batches(batches, self.option("regret_examples"))
      scores["regret"] = base.gather(regret, state, subset, self.context.rng,
                                     name=f"{self.name} ({name}, regret)")["regret"]
    for feature, model in fitted.get("ocsvm", {}).items():
      features = out["posterior_mean"] if feature == "latent" else out["image"]
      scores[f"ocsvm_{feature}"] = one_class_lib.ocsvm_score(model, features)
    if self.classifier:
      scores["mahalanobis"] = ood.mahalanobis_score(fitted["mahalanobis"], out["features"])
      return scores
    if self.kind == one_class.ANOMALY:
      return scores
    complexity = ood.input_complexity_bits(uint8_images(out["image"]))
    scores["complexity_elbo"] = ood.complexity_corrected_score(
        ood.nats_to_bits(scores["neg_elbo"]), complexity)
    if "nll" in out:
      scores["nll"] = out["nll"]
      scores["complexity_nll"] = ood.complexity_corrected_score(ood.nats_to_bits(out["nll"]),
                                                                complexity)
    return scores

  def fit(self, state) -> dict:
    """What the scores fit on ``train_data``: a classifier's Mahalanobis Gaussians of its
    features, and each OC-SVM (on the split's first ``ocsvm_examples``)."""
    fitted = {}
    if self.classifier:
      train = base.gather(self.predict_train, state, self.train_batches, self.context.rng,
                          name=f"{self.name} (train features)")
      fitted["mahalanobis"] = ood.fit_gaussian(train["features"], train["label"],
                                               int(train["label"].max()) + 1)
    if self.ocsvm:
      subset = first_batches(self.train_batches, self.option("ocsvm_examples"))
      train = base.gather(self.predict_ocsvm_train, state, subset, self.context.rng,
                          name=f"{self.name} (OC-SVM features)")
      examples = self.option("ocsvm_examples")
      fitted["ocsvm"] = {
          feature: one_class_lib.fit_ocsvm(
              train["posterior_mean" if feature == "latent" else "image"][:examples],
              self.option("ocsvm_components"), self.option("ocsvm_nu"))
          for feature in self.ocsvm}
    return fitted

  def run(self, state, step, scope):
    fitted = self.fit(state)
    sets = {IN: self.scores(state, self.predict, self.batches, "in-distribution", fitted,
                            self.regret)}
    for set_name, (predict, regret, batches) in self.ood.items():
      sets[set_name] = self.scores(state, predict, batches, set_name, fitted, regret)
    if self.reference_batches is not None:
      sets[REFERENCE] = self.scores(state, self.predict, self.reference_batches, "reference",
                                    fitted)
    names = score_names(self.config, type(self.task))
    scalars = {}
    for set_name in self.ood:
      for score in names:
        metrics = ood.ood_metrics(sets[IN][score], sets[set_name][score])
        scalars.update({f"{set_name}/{metric}_{score}": metrics[key] for metric, key in METRICS})
    if REFERENCE in sets:
      for score in names:
        scalars.update(self.at_acceptance(sets, score))
    for score in self.typicality:
      scalars.update(self.typicality_test(sets, score))
    directory = self.context.report_dir(scope)
    if directory is not None:
      write_scores(os.path.join(directory, f"{base.prefix(self.name, self.config)}_ood_scores.csv"),
                   sets, names)
    return base.Output(scalars)

  def at_acceptance(self, sets: dict, score: str) -> dict[str, float]:
    """What the threshold accepting ``accept`` of the reference set flags of the others."""
    if score in ONLY_ON_SUBSETS:
      return {}
    threshold = ood.acceptance_threshold(sets[REFERENCE][score], self.option("accept"))
    scalars = {f"flagged_at_accept_{score}": float(np.mean(sets[IN][score] > threshold))}
    for set_name in self.ood:
      scalars[f"{set_name}/recall_at_accept_{score}"] = float(np.mean(sets[set_name][score]
                                                                      > threshold))
    return scalars

  def typicality_test(self, sets: dict, score: str) -> dict[str, float]:
    """The typicality test's scalars for ``score`` (see the module docstring)."""
    reference = sets[REFERENCE][score]
    half, size = len(reference) // 2, self.option("typicality_batch")

    def test(values):
      return ood.typicality_test(values, reference[:half], reference[half:], size)

    in_batches = test(sets[IN][score])
    scalars = {f"typicality_fpr_{score}": float(in_batches.ood.mean())}
    for set_name in self.ood:
      out_batches = test(sets[set_name][score])
      scalars[f"{set_name}/typicality_auroc_{score}"] = ood.ood_metrics(
          in_batches.scores, out_batches.scores)["auroc"]
      scalars[f"{set_name}/typicality_tpr_{score}"] = float(out_batches.ood.mean())
    return scalars


def first_batches(batches: list, examples: int) -> list:
  """The first batches that hold at least ``examples`` examples (all of them if fewer)."""
  batch_size = len(jax.tree.leaves(batches[0])[0])
  return batches[:-(-examples // batch_size)]


def write_scores(path: str, sets: dict[str, dict[str, np.ndarray]], names: tuple[str, ...]):
  """One row per example of each set; a score computed on a set's first examples only (the
  regret) leaves the other rows' cells empty."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["set", *names])
    for set_name, scores in sets.items():
      columns = [scores.get(n, ()) for n in names]
      for i in range(max(len(c) for c in columns)):
        writer.writerow([set_name, *(float(c[i]) if i < len(c) else "" for c in columns)])


def read_scores(path: str) -> dict[str, dict[str, np.ndarray]]:
  """``write_scores``' file back: set name -> score name -> its examples' scores, in order."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  sets: dict[str, dict[str, list]] = {}
  for row in rows:
    scores = sets.setdefault(row.pop("set"), {})
    for name, value in row.items():
      if value != "":
        scores.setdefault(name, []).append(float(value))
  return {s: {n: np.asarray(v) for n, v in scores.items()} for s, scores in sets.items()}
