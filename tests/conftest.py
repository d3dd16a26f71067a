"""Shared fixtures: small configs on the bundled digits data, built offline in a temp dir."""
import importlib
import os
import re
import socket
import subprocess
import sys
import tempfile
from unittest import mock

# A persistent XLA cache: the many short runs here share their compiled steps
# (in this process and the launcher subprocesses). Set before JAX is imported.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "research-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The launcher subprocesses cache data splits here, not in the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), "research-tests-cache")

import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where TensorFlow is not installed (benchmarks/device_check.sh on a GPU machine), the tests
# read the digits from a TFDS data dir holding their prepared metadata and a split cache
# holding their arrays (benchmarks/device_check.py install-data). Unset: the digits are
# prepared in a fresh data dir per session and in-process runs read them through TFDS.
PREPARED_DATA_DIR = os.environ.get("RESEARCH_TESTS_DATA_DIR", "")
SPLIT_CACHE_DIR = os.environ.get("RESEARCH_TESTS_CACHE_DIR", "")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data_dir holding only what the tests prepare (the bundled digits)."""
  return PREPARED_DATA_DIR or str(tmp_path_factory.mktemp("tfds"))


def load_config(name: str, arg: str | None = "digits", data_dir: str | None = None, **overrides):
  """``configs/<name>.py``'s config for ``arg`` with a few fast-run settings and ``overrides``."""
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  config.data.data_dir = data_dir
  # "": in-process runs read through TFDS (mock data must never be cached; it has no info
  # file to key an entry by, so even with a SPLIT_CACHE_DIR it is not).
  config.data.cache_dir = SPLIT_CACHE_DIR
  config.total_steps = 20
  config.log_every_steps = 10
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture
def mock_tfds():
  """TFDS with random data of the real features (no files): every dataset 'prepared'."""
  with tfds.testing.mock_data(num_examples=64), \
       mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    yield


def run_launcher(*args: str, env: dict | None = None, timeout: int = 300):
  """Runs ``launch.py`` in a subprocess; returns the CompletedProcess."""
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args],
                        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def stderr_summary(stderr: str, tail: int = 3000) -> str:
  """A failed subprocess's stderr for an assertion message: XLA's fatal and error log
  lines (``F1124 ...``, ``E1124 ...``: an abort's stack traces push them out of the tail)
  first, then the tail."""
  logged = [line for line in stderr.splitlines() if re.match(r"[FE]\d{4} ", line)]
  return "\n".join(logged[-10:] + ["...", stderr[-tail:]])


def free_port() -> int:
  """A loopback port nothing listens on now (for a test's server or coordinator)."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def closed_port_url() -> str:
  """``http://127.0.0.1:PORT`` with nothing listening on PORT: a connection there is refused
  at once (a stand-in for a machine without network that never touches the network)."""
  return f"http://127.0.0.1:{free_port()}"


def assert_one_line_failure(proc, status: int, *fragments: str) -> str:
  """The launcher exited with ``status`` and exactly one ``error:`` line holding every fragment,
  with no traceback; returns the line."""
  assert proc.returncode == status, stderr_summary(proc.stderr)
  assert "Traceback" not in proc.stderr + proc.stdout
  lines = error_lines(proc)
  assert len(lines) == 1, stderr_summary(proc.stderr)
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


def error_lines(proc) -> list[str]:
  """The ``error: ...`` lines a launcher run printed on stderr."""
  return [line for line in proc.stderr.splitlines() if line.startswith("error:")]

