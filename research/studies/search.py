"""Hyperparameter search with cross-validation: a study on Optuna.

    python launch.py --config=studies/search:logreg,digits --workdir=/tmp/search

A search space over fields of a base config (``config.search.space``: each leaf a field of the
base config, its text ``loguniform(LOW, HIGH)``, ``uniform(LOW, HIGH)``, ``int(LOW, HIGH)``
(``int(LOW, HIGH, log)``, ``int(LOW, HIGH, step=S)``) or ``categorical(V1, V2, ...)`` of
Python literals; ``""`` leaves a field out), a metric and its direction, and a budget of
trials. Each trial's objective is the mean of ``search.metric`` over ``search.num_folds``
runs of the base config with the trial's values, run K of which trains on the other K-1
folds of a stratified K-fold partition of the training split and evaluates on fold K
(``config.data.folds``, research/data/splits.py). The fold runs drop every evaluation on
other data than their own ``train`` and ``val`` (the test split above all) and the gate.
After each fold the running mean is reported to Optuna, whose pruner (median) may stop
an unpromising trial there.

The study lives in ``search.storage`` (default: ``sqlite:///STUDY_DIR/search.db``; any
database URL Optuna accepts, e.g. PostgreSQL): every process that runs the same command
on it shares the budget, which counts finished (complete or pruned) trials and is met
exactly: a process takes a trial only while fewer than ``search.num_trials`` trials are
finished, running or queued, in the order Optuna numbered them. A running trial records
a heartbeat; a process that finds one stale (its process killed) marks it failed and queues
it again with the same values (its fold runs resume from their checkpoints, each in its own
workdir ``STUDY_DIR/runs/foldK-HASH``, the hash of its resolved config).

Once the budget is finished, the best trial's config is retrained on the whole training
split (folds off) in ``STUDY_DIR/runs/best-HASH`` and evaluated once on the test split by
the base config's final evaluations; the gate (``config.gate``, else the base config's)
decides the exit status. One process at a time does this (a lock in the study directory);
another that finds it done reads its results. The study directory then holds

    trials.csv, trials.md   one row per trial: state, objective, values, each fold's metric
    history.png             the objective of each trial and the best so far
    importance.png          each field's importance (fANOVA; needs 2+ complete trials, 2+ fields)
    best_config.py          the best config: python launch.py --config=STUDY_DIR/best_config.py
    search.md, search.csv   the best trial's CV mean and 95% interval over folds, its test metrics
"""
import ast
import contextlib
import dataclasses
import fcntl
import importlib
import json
import math
import os
import threading
import time
import warnings

import ml_collections
from absl import logging

from research import errors
from research.data import splits
from research.studies import base

SPACE_FORMS = ("loguniform(LOW, HIGH), uniform(LOW, HIGH), int(LOW, HIGH[, log][, step=S]) or "
               "categorical(V1, V2, ...) of Python literals")
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
OWN_DATA = ("train", "val")  # what a fold run may evaluate: its own folds
LOCK_FILE = "search.lock"
DB_FILE = "search.db"
POLL_S = 1.0  # how often a process waiting for other processes' trials looks again
# Fields that do not change what the search computes: a rerun may change them.
FREE_FIELDS = ("num_trials", "storage", "heartbeat_s", "grace_s", "max_retries", "sampler",
               "pruner", "startup_trials", "study_name")


@dataclasses.dataclass
class Param:
  """One searched field: its dotted name in the base config and its Optuna distribution;
  a categorical's non-scalar choices (tuples) go to Optuna as their ``repr``."""
  field: str
  distribution: object
  choices: dict | None = None  # the value Optuna stores -> the config value

  def value(self, stored):
    return self.choices[stored] if self.choices is not None else stored


def _literal(field: str, text: str, node):
  try:
    return ast.literal_eval(node)
  except ValueError:
    raise _space_error(field, text, f"{ast.unparse(node)} is not a Python literal") from None


def _space_error(field: str, text: str, why: str) -> errors.ConfigError:
  return errors.ConfigError(f"search.space.{field}={text!r} is not allowed ({why}); it must be "
                            f"{SPACE_FORMS}")


def parse_param(field: str, text: str) -> Param:
  """``Param`` of one space entry, e.g. ``loguniform(1e-4, 1e-1)``; a one-line ConfigError
  for text that does not parse."""
  import optuna
  try:
    node = ast.parse(text.strip(), mode="eval").body
  except SyntaxError:
    raise _space_error(field, text, "not an expression") from None
  if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
    raise _space_error(field, text, "not a call")
  kind = node.func.id
  flags = [a.id for a in node.args if isinstance(a, ast.Name)]
  args = [_literal(field, text, a) for a in node.args if not isinstance(a, ast.Name)]
  kwargs = {k.arg: _literal(field, text, k.value) for k in node.keywords}
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
  if kind in ("loguniform", "uniform"):
    if flags or kwargs or len(args) != 2 or not all(map(number, args)):
      raise _space_error(field, text, f"{kind} takes two numbers")
    low, high = map(float, args)
    if not low < high or (kind == "loguniform" and low <= 0):
      raise _space_error(field, text, f"{kind} needs {'0 < ' if kind == 'loguniform' else ''}"
                                      f"LOW < HIGH")
    return Param(field, optuna.distributions.FloatDistribution(low, high,
                                                               log=kind == "loguniform"))
  if kind == "int":
    if (len(args) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args)
        or set(flags) - {"log"} or set(kwargs) - {"step"}):
      raise _space_error(field, text, "int takes two integers, then log or step=S")
    low, high = args
    step, log = kwargs.get("step", 1), "log" in flags
    if not (low < high and isinstance(step, int) and step >= 1) or (log and (low < 1 or step > 1)):
      raise _space_error(field, text, "int needs LOW < HIGH, a step >= 1, and with log "
                                      "LOW >= 1 and no step")
    return Param(field, optuna.distributions.IntDistribution(low, high, log=log, step=step))
  if kind == "categorical":
    if flags or kwargs or not args:
      raise _space_error(field, text, "categorical takes one or more literals")
    if len(set(map(repr, args))) != len(args):
      raise _space_error(field, text, "a choice is given twice")
    scalar = lambda v: v is None or isinstance(v, (bool, int, float, str))  # noqa: E731
    if all(map(scalar, args)):
      return Param(field, optuna.distributions.CategoricalDistribution(args))
    return Param(field, optuna.distributions.CategoricalDistribution([repr(a) for a in args]),
                 {repr(a): a for a in args})
  raise _space_error(field, text, f"unknown distribution {kind!r}")


def leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def parse_space(space: ml_collections.ConfigDict) -> list[Param]:
  """Every non-empty leaf of ``config.search.space`` (its dotted path: the field)."""
  params = []
  for field, text in leaves(space):
    if not isinstance(text, str):
      raise _space_error(field, str(text), "not a string")
    if text.strip():
      params.append(parse_param(field, text))
  if not params:
    raise errors.ConfigError(f"search.space={space.to_dict()} searches no field; give at least "
                             f"one field of the base config a distribution: {SPACE_FORMS}")
  return params


def set_field(config: ml_collections.ConfigDict, field: str, value) -> None:
  """Sets the dotted ``field`` of ``config``; a one-line ConfigError if it has none, or if
  the value does not fit its type."""
  *path, name = field.split(".")
  node = config
  for part in path:
    node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or name not in node:
    raise errors.ConfigError(f"search.space.{field}: the base config has no field {field!r}")
  try:
    node[name] = value
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f"search.space.{field}: {value!r} does not fit the field "
                             f"({' '.join(str(e).split())})") from None


class Heartbeat:
  """Records the trial's heartbeat now and every ``interval`` seconds, in a thread, while
  the trial runs (Optuna's ``optimize`` does this for its own trials)."""

  def __init__(self, storage, trial_id: int, interval: float):
    self.storage, self.trial_id, self.interval = storage, trial_id, interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, daemon=True)

  def _beat(self):
    while not self._stop.wait(self.interval):
      try:
        self.storage.record_heartbeat(self.trial_id)
      except Exception as e:  # a busy database: the next beat tries again
        logging.warning("search: heartbeat of trial %d not recorded: %s", self.trial_id, e)

  def __enter__(self):
    self.storage.record_heartbeat(self.trial_id)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


@contextlib.contextmanager
def locked(directory: str):
  """An exclusive lock on ``STUDY_DIR/search.lock`` (processes sharing the directory)."""
  with open(os.path.join(directory, LOCK_FILE), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config, self.search = config, config.search
    s = self.search
    errors.require(isinstance(s.num_trials, int) and s.num_trials >= 1, "search.num_trials",
                   s.num_trials, "a positive integer")
    errors.require(isinstance(s.num_folds, int) and s.num_folds >= 2, "search.num_folds",
                   s.num_folds, "an integer >= 2")
    errors.require(s.direction in DIRECTIONS, "search.direction", s.direction,
                   f"one of {DIRECTIONS}")
    errors.require(s.sampler in SAMPLERS, "search.sampler", s.sampler, f"one of {SAMPLERS}")
    errors.require(s.pruner in PRUNERS, "search.pruner", s.pruner, f"one of {PRUNERS}")
    for field in ("heartbeat_s", "grace_s"):
      errors.require(s[field] > 0, f"search.{field}", s[field], "a positive number of seconds")
    errors.require(s.grace_s > s.heartbeat_s, "search.grace_s", s.grace_s,
                   f"longer than search.heartbeat_s={s.heartbeat_s}")
    self.params = parse_space(s.space)

  # --- the runs -----------------------------------------------------------------------------

  def base_config(self) -> ml_collections.ConfigDict:
    """``configs/BASE.py``'s config for ``config.dataset``, with the study's overrides."""
    try:
      module = importlib.import_module(f"configs.{self.config.base}")
    except ModuleNotFoundError:
      raise errors.ConfigError(f"base={self.config.base!r} is not allowed; it must be a config "
                               f"in configs/ (launch.py --list_configs)") from None
    try:
      config = module.get_config(self.config.dataset or None)
    except ValueError as e:
      raise errors.ConfigError(f"dataset={self.config.dataset!r}: {e}") from None
    for field, value in self.overrides({}).items():
      set_field(config, field, value)
    return config

  def overrides(self, values: dict) -> dict:
    """``{field: value}`` the study sets on the base config: its own fields, then a trial's."""
    out = {}
    if self.config.data_dir:
      out["data.data_dir"] = self.config.data_dir
    if self.config.total_steps > 0:
      out["total_steps"] = self.config.total_steps
    return {**out, **values}

  def values(self, params: dict) -> dict:
    """A trial's Optuna params as config values by field."""
    return {p.field: p.value(params[p.field]) for p in self.params}

  def trial_config(self, values: dict) -> ml_collections.ConfigDict:
    config = self.base_config()
    for field, value in values.items():
      set_field(config, field, value)
    return config

  def fold_config(self, values: dict, fold: int) -> ml_collections.ConfigDict:
    """A trial's run on fold ``fold``: no evaluation on other data than its folds, no gate."""
    config = self.trial_config(values)
    config.data.folds = splits.folds_config(self.search.num_folds, fold, self.search.fold_seed)
    for name in list(config.evals):
      if config.evals[name].get("data", "val") not in OWN_DATA:
        del config.evals[name]
    config.gate = ""
    return config

  def final_config(self, values: dict) -> ml_collections.ConfigDict:
    config = self.trial_config(values)
    if self.config.gate is not None:
      config.gate = self.config.gate
    return config

  def check(self) -> None:
    """Before any trial: a fold run and the final run validate, and the metric is one a fold
    run reports."""
    from research.evaluators import base as evaluators
    from research.tasks import base as tasks_base
    from research.train import validation
    some = self.values({p.field: p.distribution.to_external_repr(0)
                        if hasattr(p.distribution, "choices") else p.distribution.low
                        for p in self.params})
    fold = self.fold_config(some, 0)
    validation.validate(fold, None)
    validation.validate(self.final_config(some), None)
    task_cls = tasks_base.task_class(fold)
    produced = sorted(f"{evaluators.prefix(name, spec)}/{m}" for name, spec in fold.evals.items()
                      if evaluators.enabled(spec)
                      for m in evaluators.evaluator_class(spec.type).metric_names(spec, task_cls))
    errors.require(self.search.metric in produced, "search.metric", self.search.metric,
                   f"a metric the fold runs report (on their val fold): one of {produced}")

  # --- the Optuna study ---------------------------------------------------------------------

  def storage_url(self, directory: str) -> str:
    return self.search.storage or f"sqlite:///{os.path.abspath(os.path.join(directory, DB_FILE))}"

  def identity(self) -> dict:
    """What the study's trials depend on; a rerun on the same study must not change it."""
    search = {k: v for k, v in self.search.to_dict().items() if k not in FREE_FIELDS}
    return json.loads(json.dumps({"base": self.config.base, "dataset": self.config.dataset,
                                  "total_steps": self.config.total_steps, "search": search},
                                 sort_keys=True, default=str))

  def open_study(self, directory: str):
    import optuna
    import sqlalchemy
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    url = self.storage_url(directory)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings(), locked(directory):  # one process creates the tables
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs,
                             heartbeat_interval=self.search.heartbeat_s,
                             grace_period=self.search.grace_s,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                 max_retry=self.search.max_retries))
      except (ImportError, sqlalchemy.exc.SQLAlchemyError) as e:  # no driver, no server, bad URL
        why = " ".join(str(e.__cause__ or e).split())[:300]
        raise errors.ConfigError(f"search.storage={url!r} cannot be opened ({type(e).__name__}: "
                                 f"{why}); it must be a database URL Optuna accepts, e.g. "
                                 f"sqlite:///PATH or postgresql://USER@HOST/DB") from None
      try:
        study = optuna.create_study(storage=storage, study_name=self.search.study_name,
                                    direction=self.search.direction, load_if_exists=True)
      except ValueError as e:  # e.g. another direction than the stored study's
        raise errors.ConfigError(f"search.storage={url!r}: {' '.join(str(e).split())}") from None
      recorded = study.user_attrs.get("search")
      if recorded is None:
        study.set_user_attr("search", self.identity())
      elif recorded != self.identity():
        changed = sorted(k for k in set(_flat(recorded)) | set(_flat(self.identity()))
                         if _flat(recorded).get(k) != _flat(self.identity()).get(k))
        raise errors.ConfigError(
            f"the study {self.search.study_name!r} in {url} was searched with another config "
            f"(changed: {', '.join(changed)}); use another --workdir or search.study_name, or "
            f"the config it was made with (only {', '.join(FREE_FIELDS)} may change)")
    study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=self.search.startup_trials)
                    if self.search.pruner == "median" else optuna.pruners.NopPruner())
    return study

  def sampler(self, seed: int):
    import optuna
    if self.search.sampler == "random":
      return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.search.startup_trials)

  def claim(self, study):
    """A trial for this process, or None when the budget is taken: finished, running or
    queued trials, the first ``num_trials`` of them by number, hold it."""
    from optuna.trial import TrialState
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False)
    held = sorted(t.number for t in trials if t.state in live)[:self.search.num_trials]
    waiting = {t.number for t in trials if t.state == TrialState.WAITING}
    if len(held) >= self.search.num_trials and not waiting & set(held):
      return None
    # Seeded by the trials so far: one process's search is reproducible, and processes that
    # ask at different times sample differently.
    study.sampler = self.sampler(self.search.seed + len(trials))
    with warnings.catch_warnings():  # the heartbeat is this module's (``Heartbeat``)
      warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
      trial = study.ask({p.field: p.distribution for p in self.params})
    trials = study.get_trials(deepcopy=False, states=live)
    if trial.number not in sorted(t.number for t in trials)[:self.search.num_trials]:
      trial.set_user_attr("over_budget", True)  # another process took the last trial first
      study.tell(trial, state=TrialState.FAIL)
      return None
    return trial

  # --- a trial ------------------------------------------------------------------------------

  def run_trial(self, study, trial, directory: str) -> None:
    """The trial's fold runs, each fold's metric reported (the running mean); pruned when
    the pruner says so, else told the mean."""
    from optuna.trial import TrialState
    values = self.values(trial.params)
    scores, workdirs = [], []
    state, objective = TrialState.COMPLETE, None
    with Heartbeat(study._storage, trial._trial_id, self.search.heartbeat_s):
      try:
        for fold in range(self.search.num_folds):
          run = base.Run(f"fold{fold}", self.fold_config(values, fold),
                         {"trial": trial.number, "fold": fold})
          workdir = base.run_workdir(directory, run)
          result = base.execute(run, workdir)
          if self.search.metric not in result.results:
            raise errors.ConfigError(f"search.metric={self.search.metric!r} is not in the "
                                     f"results of {workdir}: {sorted(result.results)}")
          scores.append(float(result.results[self.search.metric]))
          workdirs.append(os.path.relpath(workdir, directory))
          trial.set_user_attr("fold_scores", scores)
          trial.set_user_attr("workdirs", workdirs)
          mean = sum(scores) / len(scores)
          trial.report(mean, fold)
          print(f"search: trial {trial.number} fold {fold + 1}/{self.search.num_folds}: "
                f"{self.search.metric} {scores[-1]:.4f} (mean {mean:.4f}, "
                f"{'reused' if result.reused else f'{result.wall_s:.1f} s'})", flush=True)
          if fold + 1 < self.search.num_folds and trial.should_prune():
            state = TrialState.PRUNED
            break
        objective = sum(scores) / len(scores)
      except errors.NonFiniteError as e:  # a diverging config: unpromising, not an error
        trial.set_user_attr("diverged", " ".join(str(e).split())[:200])
        state = TrialState.PRUNED
      except errors.Preempted:  # a signal: queue it again, its fold runs resume
        self.requeue(study, trial)
        raise
      except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    if state == TrialState.PRUNED:
      study.tell(trial, state=TrialState.PRUNED)
    else:
      study.tell(trial, objective)
    print(f"search: trial {trial.number} {state.name.lower()}"
          + (f": {self.search.metric} {objective:.4f} over {len(scores)} folds"
             if objective is not None and state == TrialState.COMPLETE else ""), flush=True)

  def requeue(self, study, trial) -> None:
    from optuna.trial import TrialState
    study.tell(trial, state=TrialState.FAIL)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    study._storage.get_heartbeat_stale_trial_callback()(study, frozen)

  # --- the loop -----------------------------------------------------------------------------

  def run(self, directory: str) -> dict[str, float]:
    import optuna
    from optuna.trial import TrialState
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    self.check()
    study = self.open_study(directory)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    ran, waited = 0, False
    while True:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # killed processes' trials: failed, queued
      trial = self.claim(study)
      if trial is not None:
        self.run_trial(study, trial, directory)
        ran, waited = ran + 1, False
        continue
      trials = study.get_trials(deepcopy=False)
      if sum(t.state in finished for t in trials) >= self.search.num_trials and \
          not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
        break
      if not waited:
        print("search: the budget is taken; waiting for the trials other processes run",
              flush=True)
        waited = True
      time.sleep(POLL_S)
    return self.finish(study, directory, ran)

  def finish(self, study, directory: str, ran: int) -> dict[str, float]:
    """The best trial retrained on the whole training split and tested once; the outputs."""
    from optuna.trial import TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("over_budget")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
      raise errors.ConfigError(f"no trial of the search completed (all {len(trials)} pruned or "
                               f"failed); widen search.space or raise search.num_trials")
    best = study.best_trial
    values = self.values(best.params)
    with locked(directory):  # one process retrains; another then reads its results
      run = base.Run("best", self.final_config(values), {"trial": best.number})
      result = base.execute(run, base.run_workdir(directory, run))
      print(f"search: best trial {best.number} retrained on the training split "
            f"({'reused' if result.reused else f'{result.wall_s:.1f} s'})", flush=True)
      cv_mean, cv_half = base.mean_and_interval(best.user_attrs["fold_scores"])
      self.write_outputs(study, trials, best, values, result, cv_mean, cv_half, directory)
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE,
                                                             TrialState.PRUNED)}
    tests = {k: v for k, v in result.results.items() if k.startswith("test/")}
    return {"trials": float(sum(counts.values())), "complete": float(counts[TrialState.COMPLETE]),
            "pruned": float(counts[TrialState.PRUNED]), "ran_here": float(ran),
            "best_trial": float(best.number), "cv_mean": cv_mean, "cv_ci95": cv_half, **tests,
            "gate_passed": result.results.get("gate_passed", True)}

  # --- outputs ------------------------------------------------------------------------------

  def write_outputs(self, study, trials, best, values, result, cv_mean, cv_half,
                    directory: str) -> None:
    metric = self.search.metric
    rows = []
    for t in trials:
      folds = t.user_attrs.get("fold_scores", [])
      row = {"number": t.number, "state": t.state.name, "objective": _float(t.value)}
      row.update({p.field: repr(self.values(t.params)[p.field]) if t.params else ""
                  for p in self.params})
      row.update({f"fold{k}": _float(folds[k] if k < len(folds) else None)
                  for k in range(self.search.num_folds)})
      row["duration_s"] = _float(t.duration.total_seconds() if t.duration else None)
      row["retry_of"] = t.system_attrs.get("failed_trial", "")
      rows.append(row)
    base.write_table(rows, os.path.join(directory, "trials"))
    plot_history(study, os.path.join(directory, "history.png"), metric)
    why = plot_importance(study, os.path.join(directory, "importance.png"), len(self.params))
    if why:
      print(f"search: no importance.png: {why}", flush=True)
    write_best_config(os.path.join(directory, "best_config.py"), self.config, best,
                      self.overrides(values), metric, cv_mean, cv_half, result.results)
    summary = {"best_trial": best.number, **{f: repr(v) for f, v in values.items()},
               f"cv_{metric}": cv_mean, "cv_ci95": cv_half, "folds": self.search.num_folds,
               **{k: float(v) for k, v in result.results.items() if k.startswith("test/")},
               "gate_passed": str(result.results.get("gate_passed", True)),
               "workdir": os.path.relpath(result.workdir, directory)}
    base.write_table([summary], os.path.join(directory, "search"))


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _float(v) -> float:
  return math.nan if v is None else float(v)


def plot_history(study, path: str, metric: str) -> None:
  import optuna
  from research.evaluation.images import pyplot
  plt = pyplot()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=metric)
  ax.figure.set_size_inches(7, 4)
  ax.figure.tight_layout()
  ax.figure.savefig(path, dpi=120)
  plt.close(ax.figure)


def plot_importance(study, path: str, num_params: int) -> str | None:
  """Writes the fANOVA importance plot; returns why not, when it cannot be computed."""
  import optuna
  from optuna.trial import TrialState
  complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
  if complete < 2 or num_params < 2:
    return (f"parameter importance needs 2+ completed trials and 2+ searched fields "
            f"({complete} completed, {num_params} field(s))")
  from research.evaluation.images import pyplot
  plt = pyplot()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    try:
      ax = optuna.visualization.matplotlib.plot_param_importances(study)
    except (RuntimeError, ValueError) as e:  # e.g. every completed trial has one value
      return f"parameter importance failed: {' '.join(str(e).split())}"
  ax.figure.set_size_inches(7, 4)
  ax.figure.tight_layout()
  ax.figure.savefig(path, dpi=120)
  plt.close(ax.figure)
  return None


def write_best_config(path: str, config: ml_collections.ConfigDict, best, overrides: dict,
                      metric: str, cv_mean: float, cv_half: float, results: dict) -> None:
  """A config file for the launcher: the base config with the best trial's values."""
  tests = ", ".join(f"{k} {v:.4f}" for k, v in sorted(results.items()) if k.startswith("test/"))
  arg = config.dataset or None
  lines = [
      f'"""python launch.py --config={os.path.abspath(path)}  # trial {best.number}: CV {metric} '
      f'{cv_mean:.4f} +- {cv_half:.4f}; {tests}',
      "",
      f"The best config of the search in {os.path.dirname(path)}: configs/{config.base}.py "
      f"({arg!r}) with the values below.",
      '"""',
      f"from configs import {config.base} as base",
      "",
      "",
      "def get_config(arg=None):",
      f"  config = base.get_config(arg if arg is not None else {arg!r})",
  ]
  lines += [f"  config.{field} = {value!r}" for field, value in overrides.items()]
  if config.gate is not None:
    lines.append(f"  config.gate = {config.gate!r}")
  lines.append("  return config")
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
