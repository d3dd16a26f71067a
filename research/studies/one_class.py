"""One-class anomaly detection, Ruff et al. (2018)'s protocol: for each dataset and class
c, every model trains on the training images of c alone; the whole test split is scored,
c normal and the other classes anomalous; AUROC per class and its mean over classes.

Families (``config.families``), each a config trained per class and seed:

  autoencoder      reconstruction error (configs/autoencoder.py)
  deep_svdd        distance to a centre (configs/deep_svdd.py), its encoder warm-started
                   from the autoencoder run of the same class and seed (``pretrain``)
  transformations  GEOM's transformation classifier (configs/transformations.py)

and ``ocsvm`` (``config.ocsvm``): scikit-learn's OneClassSVM on PCA features of the
pixels (research/evaluation/one_class.py), deterministic, so fitted once per class.

With ``config.class_replicas``, a family trains its classes of a dataset and seed as one run
of vmapped replicas (``replicas.train_labels``: replica i trains on ``classes[i]`` and its
``anomaly_report`` takes that class as normal; research/train/replicas.py) instead of a run
per class: the same models to float rounding, one compiled step and one start-up. Deep SVDD
keeps a run per class (``SEPARATE``); its warm start reads its class's replica of the
autoencoder run (``init_from.replica``). The replicas share one step count, so a family
whose config trains ``num_epochs`` (the classes differ in size) needs the study's
``total_steps``.

Outputs in the study directory:

  one_class.csv / .md   per dataset and family: the mean AUROC over classes (its 95%
                        interval over seeds: each seed's mean over classes), the worst
                        class, and the published anchor
  per_class.csv / .md   per dataset, family and class: mean AUROC and 95% interval over seeds
  one_class_D.png       per-class AUROC of every family on dataset D

Nothing is chosen on test data: each family runs with its config's settings (validation
holds normal images only, so it cannot rank anomaly detectors).
"""
import hashlib
import json
import os

import jax
import ml_collections
import numpy as np

from research import errors
from research.data import pipeline, preprocess, splits
from research.evaluation import one_class as one_class_lib
from research.evaluators import anomaly_report
from research.studies import base
from research.train import replicas

PRETRAINED = "deep_svdd"  # the family whose encoder starts from the autoencoder's
PRETRAINING = "autoencoder"
OCSVM = "ocsvm"
AUROC = "test/auroc"  # anomaly_report's result
# Families that train a run per class even with class_replicas: Deep SVDD's warm start and
# its centre (the mean embedding of its class) are set up for a single run
# (research/train/warm_start.py).
SEPARATE = (PRETRAINED,)

ANCHORS = {  # (dataset, family) -> (mean AUROC over classes, source)
    ("mnist", "deep_svdd"): (0.938, "Ruff 2018, official implementation's per-class results"),
    ("mnist", OCSVM): (0.91, "Ruff 2018, OC-SVM"),
    ("fashion_mnist", "transformations"): (0.935, "Golan 2018, GEOM (GOAD 2020: 0.941)"),
}


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def replicated(self, family: str) -> bool:
    """Whether ``family`` trains its classes as one run of replicas (``class_replicas``)."""
    return bool(self.config.get("class_replicas")) and family not in SEPARATE

  def run_config(self, family: str, dataset: str, normal: int, seed: int,
                 directory: str) -> ml_collections.ConfigDict:
    config = base.study_config(family, f"dataset={dataset},normal={normal}", seed,
                               self.config.data_dir, self.config.total_steps)
    if family == PRETRAINED and self.config.pretrain:
      if self.replicated(PRETRAINING):
        pretraining = self.class_replicas_run(PRETRAINING, dataset, seed, directory)
        config.init_from.replica = tuple(self.config.classes).index(normal)
      else:
        pretraining = self.make_run(PRETRAINING, dataset, normal, seed, directory)
      config.init_from.workdir = base.run_workdir(directory, pretraining)
    return config

  def make_run(self, family, dataset, normal, seed, directory) -> base.Run:
    return base.Run(f"{dataset}_{family}_class{normal}_seed{seed}",
                    self.run_config(family, dataset, normal, seed, directory),
                    {"dataset": dataset, "family": family, "normal": normal, "seed": seed})

  def class_replicas_run(self, family, dataset, seed, directory) -> base.Run:
    """One run of ``family`` whose replica i is class ``classes[i]``'s model: its run
    config (that of the first class) with each replica's training classes."""
    classes = tuple(self.config.classes)
    config = self.run_config(family, dataset, classes[0], seed, directory)
    if config.total_steps <= 0:
      raise errors.ConfigError(
          f"class_replicas: {family} on {dataset} trains num_epochs={config.num_epochs} over "
          f"each class's own examples, a step count per class size, but replicas share one; "
          f"set the study's total_steps (every class the same budget), or class_replicas=False")
    config.replicas.train_labels = tuple((c,) for c in classes)
    return base.Run(f"{dataset}_{family}_classes_seed{seed}", config,
                    {"dataset": dataset, "family": family,
                     "classes": " ".join(map(str, classes)), "seed": seed})

  def families(self) -> tuple[str, ...]:
    """The trained families in run order: the pretraining before the model it starts."""
    families = list(self.config.families)
    if PRETRAINED in families and self.config.pretrain:
      families = [f for f in families if f != PRETRAINING]
      families.insert(families.index(PRETRAINED), PRETRAINING)
    return tuple(families)

  def runs(self, directory: str) -> list[base.Run]:
    """Seed by seed, so that a partial study has every class of its first seeds; within a
    seed the replicated families' runs first (Deep SVDD may start from one)."""
    return [run for dataset in self.config.datasets for seed in self.config.seeds
            for run in self.seed_runs(dataset, seed, directory)]

  def seed_runs(self, dataset: str, seed: int, directory: str) -> list[base.Run]:
    families = self.families()
    return ([self.class_replicas_run(f, dataset, seed, directory)
             for f in families if self.replicated(f)] +
            [self.make_run(f, dataset, normal, seed, directory)
             for normal in self.config.classes for f in families if not self.replicated(f)])

  def ocsvm_auroc(self, dataset: str, normal: int, directory: str) -> float:
    """The OC-SVM's test AUROC for class ``normal``, cached in the study directory."""
    spec = dict(dataset=dataset, normal=normal, **self.config.ocsvm_fields.to_dict())
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    path = os.path.join(directory, OCSVM, f"{dataset}_class{normal}-{key}.json")
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)["auroc"]
    data = self.run_config(PRETRAINING, dataset, normal, 0, directory).data
    fn = preprocess.parse(data.preprocess)
    images = lambda raw: np.asarray(fn(raw, jax.random.PRNGKey(0))["image"])  # noqa: E731
    train = splits.only_labels(pipeline.load_split(data, data.train_split, "train_split"),
                               (normal,))
    test = pipeline.load_split(data, data.test_split, "test_split")
    scores = one_class_lib.ocsvm_scores(images(train), images(test),
                                        **self.config.ocsvm_fields.to_dict())
    auroc = anomaly_report.report(scores, test["label"], (normal,))["auroc"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump({**spec, "auroc": auroc}, f)
    return auroc

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    aurocs = {}  # (dataset, family) -> array (seeds, classes)
    classes = tuple(self.config.classes)
    for dataset in self.config.datasets:
      for family in self.families():
        by_run = {(r.run.columns["seed"], normal): auroc
                  for r in results if r.run.columns["dataset"] == dataset
                  and r.run.columns["family"] == family
                  for normal, auroc in class_aurocs(r, classes).items()}
        aurocs[dataset, family] = np.array([[by_run[s, c] for c in classes]
                                            for s in self.config.seeds])
      if self.config.ocsvm:
        aurocs[dataset, OCSVM] = np.array([[self.ocsvm_auroc(dataset, c, directory)
                                            for c in classes]])
    summary, rows, class_rows = {}, [], []
    for (dataset, family), values in aurocs.items():
      mean, half = base.mean_and_interval(values.mean(axis=1))
      per_class = values.mean(axis=0)
      anchor = ANCHORS.get((dataset, family), (np.nan, ""))
      rows.append({"dataset": dataset, "family": family, "seeds": len(values),
                   "mean_auroc": mean, "mean_auroc_ci95": half,
                   "worst_class": classes[int(per_class.argmin())],
                   "worst_auroc": float(per_class.min()),
                   "anchor_auroc": anchor[0], "anchor": anchor[1]})
      for c, column in zip(classes, values.T):
        class_mean, class_half = base.mean_and_interval(column)
        class_rows.append({"dataset": dataset, "family": family, "normal": c,
                           "auroc": class_mean, "auroc_ci95": class_half})
      summary[f"{dataset}/{family}/mean_auroc"] = mean
    base.write_table(rows, os.path.join(directory, "one_class"))
    base.write_table(class_rows, os.path.join(directory, "per_class"))
    for dataset in self.config.datasets:
      plot(class_rows, dataset, os.path.join(directory, f"one_class_{dataset}.png"))
    return summary


def class_aurocs(result: base.RunResult, classes: tuple[int, ...]) -> dict[int, float]:
  """The test AUROC of each normal class a study run trained: a class's run, or a run of
  replicas whose replica i trained on ``classes[i]``."""
  if "normal" in result.run.columns:
    return {result.run.columns["normal"]: result.results[AUROC]}
  return {c: result.results[f"{replicas.prefix(i)}/{AUROC}"] for i, c in enumerate(classes)}


def plot(class_rows: list[dict], dataset: str, path: str) -> None:
  """Grouped bars: per class, each family's mean AUROC with its 95% interval."""
  from research.evaluation.images import pyplot
  plt = pyplot()
  rows = [r for r in class_rows if r["dataset"] == dataset]
  families = list(dict.fromkeys(r["family"] for r in rows))
  classes = list(dict.fromkeys(r["normal"] for r in rows))
  width = 0.8 / len(families)
  fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(classes) * len(families) / 2), 4))
  for i, family in enumerate(families):
    mine = {r["normal"]: r for r in rows if r["family"] == family}
    means = [mine[c]["auroc"] for c in classes]
    errors = [0 if np.isnan(mine[c]["auroc_ci95"]) else mine[c]["auroc_ci95"] for c in classes]
    ax.bar(np.arange(len(classes)) + (i - (len(families) - 1) / 2) * width, means, width,
           yerr=errors, capsize=2, label=f"{family} ({np.mean(means):.3f})")
  ax.set(xticks=range(len(classes)), xticklabels=classes, xlabel="normal class",
         ylabel="test AUROC", ylim=(max(0.0, min(r["auroc"] for r in rows) - 0.05), 1.0),
         title=f"one-class anomaly detection on {dataset}")
  ax.legend(fontsize=7, title="family (mean)", title_fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
