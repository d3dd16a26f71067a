"""Colored MNIST's context shift (Arjovsky et al. 2019's protocol, configs/colored_mnist.py),
with model selection on the training environments only.

The IRM paper chose its hyperparameters on the test environment (e = 0.9); here every
choice reads the validation split, 10% held out of each training environment (e = 0.2 and
0.1). Per model of ``config.models`` (configs/colored_mnist.py's ARG: erm, irm, grey,
cvae, m2), per setting of its grid (``config.grids.MODEL = (field, values)``; a model
without one runs its config as it is) and per seed (``config.seeds`` for the MLPs,
``config.vae_seeds`` for cvae and m2), one run; a model's selected setting is the one of
the highest mean validation accuracy over its seeds. Test accuracy on e = 0.9, 0.8 and 0.7
is read for every run and reported for the selected setting (and, in the grid table, for
every setting: what a test-environment selection would have found).

Outputs in the study directory:

  colored_mnist.csv / .md       per model, its selected setting: mean validation and test
                                accuracies (e = 0.9, 0.8, 0.7) over seeds with 95% intervals,
                                whether it reads environment labels and meets the target
                                (e = 0.9 accuracy >= ``config.target``)
  colored_mnist_grid.csv / .md  the same for every setting of every model
  colored_mnist.png             test accuracy against the test environment's e per model,
                                the paper's figures as reference lines
"""
import math
import os

import ml_collections

from research.studies import base

VALIDATION = "val/accuracy"
TEST_ENVIRONMENTS = ((0.9, "test"), (0.8, "test_e80"), (0.7, "test_e70"))  # (e, prefix)
UNREAD_EVALS = ("nll", "images", "latents", "report")  # evaluations a run skips here
VAE_MODELS = ("cvae", "m2")
KINDS = {"erm": "discriminative", "irm": "IRMv1", "grey": "oracle (grey-scale input)",
         "cvae": "generative (Bayes)", "m2": "semi-supervised VAE"}
# Arjovsky et al. (2019), Table 2, e = 0.9 test accuracy (hyperparameters chosen on it).
ANCHORS = {"ERM (paper)": 0.171, "IRM (paper)": 0.669, "grey-scale oracle (paper)": 0.730,
           "optimum (label noise 0.25)": 0.75}


def setting_name(field: str, value) -> str:
  return f"{field.rsplit('.', 1)[-1]}={value:g}" if isinstance(value, float) else \
      f"{field.rsplit('.', 1)[-1]}={value}"


def accuracy_key(prefix: str) -> str:
  return f"{prefix}/accuracy"


def column(e: float) -> str:
  """The tables' column stem of the test environment ``e``: test_e90_accuracy."""
  return f"test_e{round(100 * e)}_accuracy"


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def settings(self, model: str) -> list[tuple[str, dict]]:
    """``(name, overrides)`` per grid point of ``model``; its config as it is without one."""
    grid = self.config.grids.get(model)
    if not grid:
      return [("reference", {})]
    field, values = grid
    return [(setting_name(field, v), {field: v}) for v in values]

  def seeds(self, model: str) -> tuple[int, ...]:
    return tuple(self.config.vae_seeds if model in VAE_MODELS else self.config.seeds)

  def run_config(self, model: str, overrides: dict, seed: int) -> ml_collections.ConfigDict:
    c = self.config
    arg = f"m2,labels={c.m2_labels}" if model == "m2" else model
    config = base.study_config("colored_mnist", arg, seed, c.data_dir, c.total_steps)
    config.update_from_flattened_dict(overrides)
    base.drop_evals(config, UNREAD_EVALS)
    if c.eval_batch_size > 0:
      config.eval_batch_size = min(config.eval_batch_size, c.eval_batch_size)
    if c.batch_size > 0:  # a cap (tiny data: the configs' full batches exceed it)
      config.batch_size = min(config.batch_size, c.batch_size)
      if config.data.get("labelled_batch_size", 0):
        config.data.labelled_batch_size = min(config.data.labelled_batch_size,
                                              config.batch_size // 2)
    return config

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{model}_{name}_seed{seed}", self.run_config(model, overrides, seed),
                     {"model": model, "setting": name, "seed": seed})
            for model in self.config.models for name, overrides in self.settings(model)
            for seed in self.seeds(model)]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    grid = [self.row(model, name, [r for r in results if r.run.columns["model"] == model
                                   and r.run.columns["setting"] == name])
            for model in self.config.models for name, _ in self.settings(model)]
    selected = [max((r for r in grid if r["model"] == model), key=lambda r: r["val_accuracy"])
                for model in self.config.models]
    base.write_table(grid, os.path.join(directory, "colored_mnist_grid"))
    base.write_table(selected, os.path.join(directory, "colored_mnist"))
    plot(selected, os.path.join(directory, "colored_mnist.png"))
    return {f"{r['model']}_{key}": r[key] for r in selected
            for key in ("val_accuracy", *(column(e) for e, _ in TEST_ENVIRONMENTS))}

  def row(self, model: str, setting: str, results: list[base.RunResult]) -> dict:
    """One table row: mean and 95% interval over the seeds' runs of each accuracy."""
    row = {"model": model, "kind": KINDS.get(model, ""),
           "environment_labels": "yes" if model in self.config.environment_labels else "no",
           "setting": setting, "seeds": len(results)}
    row.update(base.interval_columns(results, {
        VALIDATION: "val_accuracy",
        **{accuracy_key(prefix): column(e) for e, prefix in TEST_ENVIRONMENTS}}))
    row["meets_target"] = "yes" if row[column(0.9)] >= self.config.target else "no"
    return row


def plot(rows: list[dict], path: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.8))
  es = [e for e, _ in TEST_ENVIRONMENTS]
  for row in rows:
    errors = [0.0 if math.isnan(row[column(e) + "_ci95"]) else row[column(e) + "_ci95"]
              for e in es]
    ax.errorbar(es, [row[column(e)] for e in es], yerr=errors, fmt="o-", capsize=3,
                label=f"{row['model']} ({row['setting']})")
  for (name, value), style in zip(ANCHORS.items(), (":", "--", "-.", "-")):
    ax.axhline(value, color="grey", linestyle=style, linewidth=1)
    ax.annotate(name, (min(es), value), xytext=(2, 2), textcoords="offset points",
                fontsize=7, color="grey")
  ax.set(xlabel="test environment's colour flip probability e", ylabel="test accuracy",
         ylim=(0, 1), xticks=es,
         title="Colored MNIST: selection on the training environments (95% intervals)")
  ax.legend(fontsize=8, loc="center right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
