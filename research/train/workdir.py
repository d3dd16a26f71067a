"""The files a run keeps in its workdir besides checkpoints and metrics: the resolved
config, the training inputs' spec, the final results and the replicas' map; and the lock
that keeps a second run out of a live workdir."""
import fcntl
import json
import os
import socket
import time

import jax
import ml_collections

from research import errors
from research.data import splits

CONFIG_FILE = "config.json"
INPUT_SPEC_FILE = "input_spec.json"
RESULTS_FILE = "results.json"
REPLICAS_FILE = "replicas.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
CURVES_FILE = "curves.png"
LOCK_FILE = ".lock"

# results.json's fields that describe the run rather than its results: the config's name as
# the launcher was given it, the gate (None: none) and the wall time of training and
# evaluation (seconds, over its resumes). ``read_results`` leaves them out.
RUN_FIELDS = ("config", "gate", "wall_time_sec")

# Fields that say where a run reads, caches or traces, or how fast it compiles, not what it
# computes: a resumed run may change them freely.
MACHINE_FIELDS = (("data", "data_dir"), ("data", "cache_dir"), ("compilation_cache_dir",),
                  ("xla_flags",), ("profile_steps",))


def write_json(workdir: str, name: str, value) -> None:
  """Process 0 writes ``value`` to ``workdir/name`` atomically (a temporary file, renamed)."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, name)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=2)
    f.flush()
    os.fsync(f.fileno())  # on disk before it replaces the old file
  os.replace(path + ".tmp", path)


class Lock:
  """An exclusive lock on ``WORKDIR/.lock`` while a run uses the workdir (process 0 only:
  the others of a multi-process run share it). A second run is refused at once. The kernel
  drops the lock when its process dies, however it dies, so a killed run leaves none."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None
    if jax.process_index() != 0:
      return
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise errors.WorkdirInUse(
          f"{workdir} is in use by a live run ({holder}); wait for it to end or stop it, or "
          f"use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
    self._fd = fd

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  write_json(workdir, CONFIG_FILE, json.loads(config.to_json_best_effort()))


def _tuples(value):
  """JSON lists back as tuples, as configs write their sequences."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run recorded in ``workdir``."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.UserError(f"no {CONFIG_FILE} in {workdir}: it is not the workdir of a run "
                           f"(train first, or pass the --workdir of a trained run)")
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


def flat_fields(config: ml_collections.ConfigDict) -> dict:
  """``{"a.b": value}`` of the resolved config, JSON values, without MACHINE_FIELDS."""
  out = {}

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(value, f"{prefix}{key}.")
      else:
        out[f"{prefix}{key}"] = _tuples(value)

  walk(json.loads(config.to_json_best_effort()), "")
  for path in MACHINE_FIELDS:
    out.pop(".".join(path), None)
  return out


def config_changes(recorded: ml_collections.ConfigDict,
                   config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """``{field: (recorded value, new value)}`` for each field that differs."""
  old, new = flat_fields(recorded), flat_fields(config)
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def append_config_history(workdir: str, step: int, changes: dict) -> None:
  """One JSON line per accepted change of a run's config: the step it applies from and the
  fields' old and new values (config.json then holds the new config)."""
  if jax.process_index() != 0:
    return
  record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_step": step,
            "changes": {k: {"old": old, "new": new} for k, (old, new) in changes.items()}}
  with open(os.path.join(workdir, CONFIG_HISTORY_FILE), "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_input_spec(workdir: str) -> dict | None:
  path = os.path.join(workdir, INPUT_SPEC_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return {name: (tuple(shape), str(dtype)) for name, (shape, dtype) in json.load(f).items()}
  except (ValueError, TypeError, AttributeError) as e:  # not JSON, or not {name: [shape, dtype]}
    raise errors.UserError(
        f"{path} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:200]}); it records "
        f"the training data's shapes and dtypes: restore it from a copy of the workdir, or "
        f"delete it to record the current data's") from None


def check_input_spec(workdir: str, spec: dict, fresh: bool) -> None:
  """Records the training data's per-example shapes and dtypes on a fresh run; any later
  run in the workdir (resume, eval) must feed the same, or it gets a clear error."""
  recorded = None if fresh else read_input_spec(workdir)
  if recorded is None:
    write_json(workdir, INPUT_SPEC_FILE, {k: [list(s), d] for k, (s, d) in spec.items()})
    return
  splits.check_spec(spec, recorded, workdir)


def read_results(workdir: str, run_fields: bool = False) -> dict | None:
  """results.json: the final metrics, ``step`` and ``gate_passed``, and with ``run_fields``
  also RUN_FIELDS (None when the run has not finished)."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    results = json.load(f)
  return results if run_fields else {k: v for k, v in results.items() if k not in RUN_FIELDS}
