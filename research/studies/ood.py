"""What each family knows it does not know: classifier scores against generative scores on
the same in-distribution / OOD pairs, over seeds.

For every in-distribution dataset D (``config.pairs``) and seed the study trains

  classifier           ``config.classifier`` (cnn_fast): msp, energy, mahalanobis
  vae_bernoulli        the MLP VAE (configs/vae.py) on binarized pixels, Bernoulli decoder:
                       -ELBO, IS NLL, their complexity corrections, likelihood regret
  vae_grey             the same VAE on 8-bit grey levels, discretized logistic decoder
  *_background         each VAE again on inputs perturbed with ``random_pixels(rate)`` (Ren
                       et al. 2019), for the likelihood ratios
  autoencoder          one-class models of the whole in-distribution training split
  deep_svdd            (configs/autoencoder.py, configs/deep_svdd.py, ``one_class_epochs``):
                       reconstruction error, distance to the centre; Deep SVDD's encoder
                       starts from the autoencoder run of its seed
  ocsvm                not a run: scikit-learn's OneClassSVM on PCA features of the pixels
                       (``ocsvm`` names pixels; computed in the classifier's run) and, as
                       ``vae_*:ocsvm_latent``, on each VAE's posterior means (names latent)

and each run's final ``ood_report`` (research/evaluators/ood_report.py) scores D's test
split and every OOD set of D. The analysis adds the likelihood ratios of every VAE against
its background model of the same seed (``lr_elbo`` = -ELBO - background -ELBO, ``lr_nll``
the same with the importance-sampled NLL), computes AUROC, AUPR-in, AUPR-out and FPR at
95% TPR per seed (research/evaluation/ood.py) and writes, in the study directory:

  ood.csv / ood.md       per pair and score: each metric's mean and 95% interval over
                         seeds, the OOD recall at the threshold that accepts
                         ``config.accept`` of the validation split (recall_at_acceptP),
                         the typicality test's AUROC over batches of M
                         (typicality_auroc_mM), and the published anchor
  best.md                per pair: the best score of each family
  roc_D_vs_O.png         ROC curves of every score (first seed)
  hist_D_vs_O.png        in vs OOD histograms of every score (first seed)

The test splits are read once, by the final evaluation; no score or threshold is chosen on
OOD data (the table reports every score; "best" is a reading of the table, not a model
selection).
"""
import os

import ml_collections
import numpy as np

from research.evaluation import ood as ood_lib
from research.evaluators import ood_report
from research.studies import base

EVAL = "ood"  # the runs' evaluation of the OOD sets, and its CSV: reports/ood_ood_scores.csv
CLASSIFIER = "classifier"
VAES = {  # family -> (data.preprocess, task.likelihood, levels of its background's noise)
    "vae_bernoulli": ("scale(0, 1)|binarize", "bernoulli", 2),
    "vae_grey": ("scale(0, 1)", "logistic", 256),
}
BACKGROUND = "_background"
PRETRAINED, PRETRAINING = "deep_svdd", "autoencoder"  # as in the one-class study
OCSVM = "ocsvm"  # the table's family of the pixels' OC-SVM
IN_CLASSES = 10  # the in-distribution datasets' classes: every one of them is normal
LIKELIHOOD_RATIOS = (("lr_elbo", "neg_elbo"), ("lr_nll", "nll"))  # (name, score it corrects)

BEST_VAE = "best_vae"  # an anchor for the best score of any VAE (best.md)
# Published AUROCs beside ours: (in, ood, score) -> (auroc, source). The Fashion-MNIST rows
# are those Ren et al. 2019 (Table 1, PixelCNN++ / classifier baselines) and Xiao et al.
# 2020 report; the flips are the best per-sample VAE scores of Xiao et al. 2020.
ANCHORS = {
    ("fashion_mnist", "mnist", "likelihood"): (0.089, "Ren 2019, PixelCNN++ likelihood"),
    ("fashion_mnist", "mnist", "lr"): (0.994, "Ren 2019, PixelCNN++ likelihood ratio"),
    ("fashion_mnist", "mnist", "regret"): (0.988, "Xiao 2020, VAE likelihood regret"),
    ("fashion_mnist", "mnist", "msp"): (0.734, "Ren 2019, classifier MSP"),
    ("fashion_mnist", "mnist", "mahalanobis"): (0.942, "Ren 2019, Mahalanobis"),
    ("fashion_mnist", "vflip", BEST_VAE): (0.87, "Xiao 2020, best per-sample VAE score"),
    ("fashion_mnist", "hflip", BEST_VAE): (0.67, "Xiao 2020, best per-sample VAE score"),
}


def score_key(family: str, score: str) -> str:
  """The tables' name of a run's score: FAMILY:SCORE, the pixels' OC-SVM (which does not
  depend on the run it is computed in) under its own family."""
  return f"{OCSVM}:pixels" if score == "ocsvm_pixels" else f"{family}:{score}"


def anchor_key(score: str) -> str:
  """Which published score a score of ours stands beside."""
  _, _, name = score.partition(":")
  if name in ("neg_elbo", "nll"):
    return "likelihood"
  return "lr" if name.startswith("lr_") else name


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # ---- the runs
  def families(self) -> tuple[str, ...]:
    vaes = tuple(self.config.vaes)
    backgrounds = tuple(f + BACKGROUND for f in vaes) if self.config.likelihood_ratio else ()
    one_class = tuple(self.config.one_class)
    if PRETRAINED in one_class:  # its pretraining runs first
      one_class = (PRETRAINING,) + tuple(f for f in one_class if f != PRETRAINING)
    return (CLASSIFIER,) * bool(self.config.classifier) + vaes + backgrounds + one_class

  def ood_eval(self, dataset: str, ocsvm: tuple[str, ...] = (),
               **fields) -> ml_collections.ConfigDict:
    sets = {name: dict(spec) for name, spec in self.config.pairs[dataset].items()}
    ocsvm = tuple(f for f in ocsvm if f in self.config.ocsvm)
    if ocsvm:
      fields.update(ocsvm=ocsvm, ocsvm_examples=self.config.ocsvm_examples)
    return ml_collections.ConfigDict(dict(type="ood_report", data="test", every_steps=0,
                                          ood_sets=sets, **fields))

  def run_config(self, dataset: str, family: str, seed: int,
                 directory: str) -> ml_collections.ConfigDict:
    c = self.config
    if family == CLASSIFIER:
      config = base.study_config(c.classifier, dataset, seed, c.data_dir, c.total_steps)
      config.evals[EVAL] = self.ood_eval(dataset, ocsvm=("pixels",))
    elif family in (PRETRAINING, PRETRAINED):
      config = base.study_config(family, f"dataset={dataset}", seed, c.data_dir, c.total_steps)
      config.data.train_labels = tuple(range(IN_CLASSES))
      if c.one_class_epochs > 0 and c.total_steps <= 0:
        config.num_epochs = float(c.one_class_epochs)
        config.total_steps = -1
      del config.evals["test"]  # anomaly_report: no class of the test split is anomalous
      config.evals[EVAL] = self.ood_eval(dataset)
      if family == PRETRAINED and PRETRAINING in c.one_class:
        config.init_from.workdir = base.run_workdir(
            directory, self.make_run(dataset, PRETRAINING, seed, directory))
    else:
      vae = family.removesuffix(BACKGROUND)
      config = base.study_config("vae", dataset, seed, c.data_dir, c.total_steps)
      if c.vae_epochs > 0:  # total_steps > 0, a quick look, still wins
        config.num_epochs = float(c.vae_epochs)
      preprocess, likelihood, levels = VAES[vae]
      config.data.preprocess, config.task.likelihood = preprocess, likelihood
      if family.endswith(BACKGROUND):
        config.data.augment = f"random_pixels({c.background_rate}, {levels})"
      del config.evals["nll"]  # the OOD evaluation's in-distribution set is the test nll
      regret = {} if family.endswith(BACKGROUND) else dict(regret_steps=c.regret_steps,
                                                            regret_examples=c.regret_examples)
      config.evals[EVAL] = self.ood_eval(
          dataset, ocsvm=() if family.endswith(BACKGROUND) else ("latent",),
          num_samples=c.num_samples, chunk=c.chunk, typicality_batch=c.typicality_batch,
          **regret)
    config.gate = ""  # a study reports what each run reached
    return config

  def make_run(self, dataset: str, family: str, seed: int, directory: str) -> base.Run:
    return base.Run(f"{dataset}_{family}_seed{seed}",
                    self.run_config(dataset, family, seed, directory),
                    {"in": dataset, "model": family, "seed": seed})

  def runs(self, directory: str) -> list[base.Run]:
    return [self.make_run(dataset, family, seed, directory)
            for seed in self.config.seeds for dataset in self.config.pairs
            for family in self.families()]

  # ---- the analysis
  def scores(self, results: list[base.RunResult]) -> dict:
    """(dataset, seed) -> set name -> "family:score" -> per-example scores, likelihood
    ratios included."""
    runs = {(r.run.columns["in"], r.run.columns["seed"], r.run.columns["model"]): r
            for r in results}
    out = {}
    for (dataset, seed, family), result in runs.items():
      if family.endswith(BACKGROUND):
        continue
      sets = read_run_scores(result.workdir)
      mine = out.setdefault((dataset, seed), {})
      background = runs.get((dataset, seed, family + BACKGROUND))
      background_sets = read_run_scores(background.workdir) if background else {}
      for set_name, scores in sets.items():
        row = mine.setdefault(set_name, {})
        row.update({score_key(family, name): values for name, values in scores.items()})
        for ratio, score in LIKELIHOOD_RATIOS:
          if set_name in background_sets and score in scores:
            row[f"{family}:{ratio}"] = scores[score] - background_sets[set_name][score]
    return out

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    scores = self.scores(results)
    by_run = {(r.run.columns["in"], r.run.columns["seed"], r.run.columns["model"]): r.results
              for r in results}
    rows, summary = [], {}
    for dataset, sets in self.config.pairs.items():
      seeds = [s for s in self.config.seeds if (dataset, s) in scores]
      for set_name in sets:
        names = list(scores[(dataset, seeds[0])][set_name])
        for name in names:
          per_seed = [ood_lib.ood_metrics(scores[(dataset, s)]["in"][name],
                                          scores[(dataset, s)][set_name][name]) for s in seeds]
          row = {"in": dataset, "ood": set_name, "score": name, "seeds": len(seeds)}
          for metric, key in ood_report.METRICS:
            row[metric], row[f"{metric}_ci95"] = base.mean_and_interval([m[key] for m in per_seed])
          family, _, score = name.partition(":")
          typicality = [by_run.get((dataset, s, family), {}).get(
              f"{EVAL}/{set_name}/typicality_auroc_{score}", np.nan) for s in seeds]
          # A test on batches, not a per-example score: its own column, named by its M.
          row[f"typicality_auroc_m{self.config.typicality_batch}"] = float(np.mean(typicality))
          row[f"recall_at_accept{round(100 * self.config.accept)}"] = self.recall_at_accept(
              [scores[(dataset, s)] for s in seeds], set_name, name)
          anchor = ANCHORS.get((dataset, set_name, anchor_key(name)))
          row["anchor_auroc"], row["anchor"] = anchor if anchor else (np.nan, "")
          rows.append(row)
        plot_pair(scores[(dataset, seeds[0])], set_name, names,
                  os.path.join(directory, f"{{}}_{dataset}_vs_{set_name}.png"),
                  f"{dataset} (in) vs {set_name} (OOD), seed {seeds[0]}")
    base.write_table(rows, os.path.join(directory, "ood"))
    best = best_rows(rows)
    base.write_table(best, os.path.join(directory, "best"))
    for row in best:
      summary[f"{row['in']}_vs_{row['ood']}/{row['family']}_auroc"] = row["auroc"]
    return summary


  def recall_at_accept(self, sets_per_seed: list[dict], set_name: str, name: str) -> float:
    """The mean over seeds of the OOD examples flagged by the threshold that accepts
    ``config.accept`` of the run's reference (validation) examples; nan where a seed's run
    has no reference scores."""
    recalls = []
    for sets in sets_per_seed:
      if name not in sets.get(ood_report.REFERENCE, {}):
        return float("nan")
      threshold = ood_lib.acceptance_threshold(sets[ood_report.REFERENCE][name],
                                               self.config.accept)
      recalls.append(np.mean(sets[set_name][name] > threshold))
    return float(np.mean(recalls))


def read_run_scores(workdir: str) -> dict:
  """A run's per-example OOD scores: set name -> score name -> values."""
  return ood_report.read_scores(os.path.join(workdir, "reports", f"{EVAL}_ood_scores.csv"))


def best_rows(rows: list[dict]) -> list[dict]:
  """Per pair and family, the score of the highest mean AUROC, beside the published anchor
  of that score (or, for a VAE, of the best published VAE score)."""
  best = {}
  for row in rows:
    family = row["score"].partition(":")[0]
    key = (row["in"], row["ood"], family)
    if key not in best or row["auroc"] > best[key]["auroc"]:
      best[key] = row
  out = []
  for (i, o, f), r in best.items():
    anchor = (ANCHORS.get((i, o, BEST_VAE)) if f.startswith("vae") else None) or (
        (r["anchor_auroc"], r["anchor"]) if r["anchor"] else (np.nan, ""))
    out.append({"in": i, "ood": o, "family": f, "score": r["score"].partition(":")[2],
                "auroc": r["auroc"], "auroc_ci95": r["auroc_ci95"], "fpr95": r["fpr95"],
                "fpr95_ci95": r["fpr95_ci95"], "anchor_auroc": anchor[0], "anchor": anchor[1]})
  return out


def plot_pair(scores: dict, set_name: str, names: list[str], path_pattern: str, title: str):
  """``roc_*.png``: every score's ROC curve; ``hist_*.png``: in vs OOD histograms per score."""
  from sklearn.metrics import roc_curve

  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 5.5))
  families = list(dict.fromkeys(name.partition(":")[0] for name in names))
  styles = ("-", "--", ":", "-.")
  colors = plt.get_cmap("tab20").colors
  for i, name in enumerate(names):
    in_scores, out_scores = scores["in"][name], scores[set_name][name]
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[in_scores, out_scores])
    auroc = ood_lib.ood_metrics(in_scores, out_scores)["auroc"]
    ax.plot(fpr, tpr, styles[families.index(name.partition(":")[0]) % len(styles)],
            color=colors[i % len(colors)], label=f"{name} ({auroc:.3f})", lw=1.2)
  ax.plot([0, 1], [0, 1], "k:", lw=0.8)
  ax.set(xlabel="false positive rate (in-distribution flagged)",
         ylabel="true positive rate (OOD detected)", title=title)
  ax.legend(fontsize=6, loc="lower right", title="score (AUROC)", title_fontsize=6)
  fig.tight_layout()
  fig.savefig(path_pattern.format("roc"), dpi=120)
  plt.close(fig)
  cols = 4
  fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols,
                           figsize=(3.2 * cols, 2.4 * ((len(names) + cols - 1) // cols)),
                           squeeze=False)
  for ax, name in zip(axes.flat, names):
    both = np.r_[scores["in"][name], scores[set_name][name]]
    bins = np.linspace(*np.percentile(both, [0.5, 99.5]), 50)
    ax.hist(scores["in"][name], bins, alpha=0.6, density=True, label="in")
    ax.hist(scores[set_name][name], bins, alpha=0.6, density=True, label=set_name)
    ax.set_title(name, fontsize=8)
    ax.tick_params(labelsize=6)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=6)
  fig.suptitle(title + " (higher = more OOD)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path_pattern.format("hist"), dpi=110)
  plt.close(fig)
