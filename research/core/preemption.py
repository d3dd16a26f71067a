"""Stopping cleanly on SIGTERM/SIGINT: the loop finishes its step, checkpoints and exits.

Cloud schedulers preempt with SIGTERM (and a grace period); Ctrl-C sends SIGINT.
Inside the training loop (``SignalWatcher``) the first signal asks the loop to stop at the
next step boundary; outside it (start-up, restore, compilation, the final evaluation), once
``interrupt_on_signals`` is on, the first signal raises errors.Interrupted naming the phase
(``set_phase``). Either way a second signal exits at once.
"""
import os
import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from research import errors

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_phase = ["start-up"]  # what the process does outside the loop, for errors.Interrupted
_raised: list[errors.Interrupted] = []  # the signal's Interrupted, in case Python dropped it


def set_phase(name: str) -> None:
  """Names what the process does now (``"the final evaluation"``) for errors.Interrupted,
  once the previous phase is known not to have been interrupted (``raise_if_dropped``)."""
  raise_if_dropped()
  _phase[0] = name


def raise_if_dropped() -> None:
  """Raises again the errors.Interrupted of a signal that Python dropped: a handler's
  exception raised inside a gc or weakref callback (JAX runs one at every collection) is
  printed as "Exception ignored in ..." and the program goes on as if no signal came."""
  if _raised:
    raise _raised.pop()


def _exit_at_once(signum, frame):
  os._exit(128 + signum)


def _interrupt(signum, frame):
  for s in SIGNALS:  # the exception unwinds through cleanup; a second signal cuts it short
    signal.signal(s, _exit_at_once)
  _raised[:] = [errors.Interrupted(signal.Signals(signum).name, _phase[0])]
  raise _raised[0]


def interrupt_on_signals() -> None:
  """From now on a SIGTERM/SIGINT outside the training loop raises errors.Interrupted in the
  main thread (at its next Python bytecode: a running XLA compilation finishes first)."""
  if threading.current_thread() is threading.main_thread():
    for s in SIGNALS:
      signal.signal(s, _interrupt)


class SignalWatcher:
  """A context in which the first SIGTERM/SIGINT is recorded and a second one exits."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self.signal_name is not None:
      _exit_at_once(signum, frame)
    self.signal_name = signal.Signals(signum).name
    logging.warning("%s received: stopping after this step (send it again to exit at once).",
                    self.signal_name)

  def __enter__(self):
    raise_if_dropped()  # a start-up that was interrupted does not begin to train
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():  # after a stop, a second signal exits at once
      signal.signal(s, handler if self.signal_name is None else _exit_at_once)
    return False

  def stop_requested(self, can_sync: bool) -> bool:
    """Whether to stop now. With several processes all must agree, which takes a sync:
    they only compare notes where ``can_sync`` (the loop passes its logging steps)."""
    requested = self.signal_name is not None
    if jax.process_count() == 1:
      return requested
    if not can_sync:
      return False
    return bool(np.any(multihost_utils.process_allgather(np.asarray(requested))))
