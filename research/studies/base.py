"""A study: a program of runs (configs with overrides, each in its own workdir under one
study directory) and a final analysis over their results.

    python launch.py --config=studies/classifier_zoo --workdir=/tmp/zoo

A study config has ``config.study`` naming a module ``research/studies/<name>.py`` (or,
dotted, any importable module) that defines ``Study(config)`` with

    runs(directory)    -> list[Run], each a resolved run config with a label and columns
                          (``directory``: the study's, where a run may find another's workdir)
    analyze(results, directory) -> dict of scalars, after writing its tables and plots

or, for a study that decides its runs as it goes (research/studies/search.py), with
``run(directory) -> dict of scalars`` instead, which drives its own loop over ``execute``.

Every run trains in ``STUDY_DIR/runs/<label>-<hash>``, where the hash is that of its
resolved config (less machine-local fields such as data folders): rerunning the study
reuses every run whose workdir holds results, resumes unfinished ones (exactly, from their
checkpoints) and trains a changed config afresh in a new workdir. ``runs.csv`` and
``runs.md`` list every run's columns and results; the study's own analysis comes beside them.
"""
import csv
import dataclasses
import hashlib
import importlib
import json
import math
import os
import time

import ml_collections
import numpy as np

from research import registry
from research.train import loop, validation, workdir as workdir_lib

RUN_INFO_FILE = "study_run.json"  # in each run's workdir: its columns and wall time


@dataclasses.dataclass
class Run:
  label: str  # a readable name, e.g. "cnn_seed0"
  config: ml_collections.ConfigDict
  columns: dict  # what the tables show of the run besides its results, e.g. {"config": "cnn"}


@dataclasses.dataclass
class RunResult:
  run: Run
  workdir: str
  results: dict[str, float]
  wall_s: float  # training and evaluation, when it ran (a reused run keeps its figure)
  reused: bool


def config_hash(config: ml_collections.ConfigDict) -> str:
  """A short hash of the resolved config without machine-local fields
  (``workdir.MACHINE_FIELDS``)."""
  fields = workdir_lib.flat_fields(config)
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]


def run_workdir(directory: str, run: Run) -> str:
  return os.path.join(directory, "runs", f"{run.label}-{config_hash(run.config)}")


def execute(run: Run, workdir: str) -> RunResult:
  """The run's results: read back when its workdir holds them, else trained (resuming)."""
  results = workdir_lib.read_results(workdir)
  info_path = os.path.join(workdir, RUN_INFO_FILE)
  if results is not None and os.path.exists(info_path):
    with open(info_path) as f:
      return RunResult(run, workdir, results, json.load(f)["wall_s"], reused=True)
  start = time.perf_counter()
  results = loop.train_and_evaluate(run.config, workdir, config_name=run.label)
  wall = time.perf_counter() - start
  workdir_lib.write_json(workdir, RUN_INFO_FILE, {"label": run.label, "columns": run.columns,
                                                  "wall_s": wall})
  return RunResult(run, workdir, results, wall, reused=False)


# Datasets whose model configs take another ARG: digits28 (the bundled digits blown up to
# 28x28, research/data/digits.py) runs as the configs' quick ``digits`` runs do.
CONFIG_ARGS = {"digits28": "digits"}


def config_arg(dataset: str) -> str:
  """The ARG of a model config (``--config=NAME:ARG``) for a run on ``dataset``."""
  return CONFIG_ARGS.get(dataset, dataset)


def study_config(name: str, arg: str, seed: int, data_dir: str | None = None,
                 total_steps: int = -1, num_epochs: float = -1) -> ml_collections.ConfigDict:
  """``configs/NAME.py``'s config for ``arg`` with the study's seed, data dir and (when
  ``total_steps`` > 0) a budget of that many steps, its logs, evaluations and checkpoints
  no further apart, else (when ``num_epochs`` > 0) that many epochs."""
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  config.seed = seed
  if data_dir:
    config.data.data_dir = data_dir
  if num_epochs > 0:
    config.num_epochs = float(num_epochs)
  if total_steps > 0:
    config.total_steps = total_steps
    for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
      config[field] = min(config[field], total_steps)
  return config


def drop_evals(config: ml_collections.ConfigDict, names) -> None:
  """Deletes the evaluations ``names`` (those the config has) a study does not read."""
  for name in names:
    if name in config.evals:
      del config.evals[name]


def interval_columns(results: list[RunResult], columns: dict[str, str]) -> dict[str, float]:
  """For each ``result key -> column`` of ``columns``: the column's mean over ``results``
  (e.g. one config's seeds) and ``COLUMN_ci95``, its 95% interval's half-width
  (``mean_and_interval``)."""
  row = {}
  for key, column in columns.items():
    row[column], row[f"{column}_ci95"] = mean_and_interval([r.results[key] for r in results])
  return row


def write_table(rows: list[dict], path_stem: str, float_format: str = "{:.4f}") -> None:
  """``rows`` as ``PATH_STEM.csv`` and a Markdown ``PATH_STEM.md``: the columns are every
  row's keys in the order they first appear, a row without a key leaves its cell empty."""
  if not rows:
    return
  columns = list(dict.fromkeys(key for row in rows for key in row))
  with open(path_stem + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
  cell = lambda v: float_format.format(v) if isinstance(v, float) else str(v)  # noqa: E731
  lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
  with open(path_stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


def mean_and_interval(values, confidence: float = 0.95) -> tuple[float, float]:
  """(mean, half-width) of the Student-t ``confidence`` interval of the mean of ``values``
  (e.g. one metric over seeds or folds): t_{(1+confidence)/2, n-1} * s / sqrt(n), s the
  sample standard deviation; with one value the half-width is nan."""
  from scipy import stats
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float(values.mean()), math.nan
  half = (stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1)
          / math.sqrt(len(values)))
  return float(values.mean()), float(half)


def run_study(config: ml_collections.ConfigDict, directory: str) -> dict[str, float]:
  """Runs (or reuses) every run of the study in ``directory``, then its analysis."""
  study = registry.import_member("studies", config.study, "Study")(config)
  if hasattr(study, "run"):  # it drives its own loop (e.g. a search)
    os.makedirs(directory, exist_ok=True)
    return study.run(directory)
  runs = study.runs(directory)
  for run in runs:  # every run's config is checked before any trains
    validation.validate(run.config, None)
  os.makedirs(directory, exist_ok=True)
  results = []
  for i, run in enumerate(runs):
    result = execute(run, run_workdir(directory, run))
    print(f"study {config.study}: run {i + 1}/{len(runs)} {run.label}: "
          f"{'reused' if result.reused else f'trained in {result.wall_s:.1f} s'}", flush=True)
    results.append(result)
  rows = [{**r.run.columns, **r.results, "wall_s": r.wall_s,
           "workdir": os.path.relpath(r.workdir, directory)} for r in results]
  write_table(rows, os.path.join(directory, "runs"))
  summary = study.analyze(results, directory)
  reused = sum(r.reused for r in results)
  return {"runs": float(len(results)), "reused": float(reused), **summary}
