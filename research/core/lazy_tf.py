"""clu without TensorFlow at import time.

``clu.metric_writers`` (and with it ``clu.periodic_actions``) imports clu's TensorFlow
``SummaryWriter`` eagerly, and that module imports TensorFlow (~5 s, ~400 MB) and
TensorBoard's hparams plugin, which calls into TensorFlow at import. This project writes
TensorBoard files without TensorFlow (``research/core/writers.py``), so ``install()``
registers ``clu.metric_writers.summary_writer`` as a module whose ``SummaryWriter`` imports
the real one (and TensorFlow) on first call; the rest of clu is untouched. It must run
before clu's writers are imported: ``research/__init__.py`` calls it.

(A lazy ``tensorflow`` module does not work here: on Python 3.11 ``import tensorflow``
reads ``__spec__`` and so loads it, TensorBoard's hparams plugin uses it at import, and a
``tensorflow`` entry in ``sys.modules`` makes matplotlib and etils load it to check
whether arrays are TF tensors.)
"""
import importlib
import sys
import types

DEFERRED = "clu.metric_writers.summary_writer"
REAL = "clu.metric_writers.tf.summary_writer"


def _real_module():
  return importlib.import_module(REAL)


def _module_getattr(name: str):
  """Names other than SummaryWriter come from the real module (module metadata never does:
  the import system probes ``__path__`` and the like)."""
  if name.startswith("__"):
    raise AttributeError(name)
  return getattr(_real_module(), name)


def SummaryWriter(*args, **kwargs):  # noqa: N802 (clu's name)
  """clu's TensorFlow SummaryWriter, imported with TensorFlow on first use."""
  return _real_module().SummaryWriter(*args, **kwargs)


def install() -> None:
  """Registers the deferred ``clu.metric_writers.summary_writer`` unless clu's writers are
  already imported (then TensorFlow is, too, and there is nothing left to save)."""
  if DEFERRED in sys.modules:
    return
  module = types.ModuleType(DEFERRED, SummaryWriter.__doc__)
  module.SummaryWriter = SummaryWriter
  module.__getattr__ = _module_getattr
  sys.modules[DEFERRED] = module
