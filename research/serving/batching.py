"""Server-side batching: concurrent requests' examples run as one call of a compiled function.

A ``Batcher`` owns one function ``fn(inputs) -> outputs`` (arrays with a leading batch
dimension) and a thread that calls it. The first request in an empty queue opens a batch;
requests that arrive while it waits join it, up to ``max_batch_size`` examples. It waits
at most ``timeout_s`` after the first, and not at all when no other request is in flight
(``InFlight``: one client alone pays no waiting). The batch is padded with zero rows to the smallest of
``batch_sizes`` that holds it (each compiled once, at start-up, by ``warm_up``) and each
request gets its own rows back. Requests larger than ``max_batch_size`` are split.

With ``enabled=False`` each request is one call of its own (padded the same way), run in a
worker thread: the baseline that benchmarks/load_test.py compares with.
"""
import asyncio
import concurrent.futures
import dataclasses
import queue
import threading
import time
from typing import Callable

import jax
import numpy as np


def default_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
  """Powers of two up to ``max_batch_size``, and it."""
  sizes = [1]
  while sizes[-1] * 2 < max_batch_size:
    sizes.append(sizes[-1] * 2)
  return tuple(sorted({*sizes, max_batch_size}))


def num_rows(inputs: dict) -> int:
  return len(next(iter(inputs.values())))


def pad(inputs: dict, size: int) -> dict:
  """Each input with zero rows appended up to ``size`` rows."""
  out = {}
  for k, v in inputs.items():
    v = np.asarray(v)
    out[k] = v if len(v) == size else np.concatenate(
        [v, np.zeros((size - len(v), *v.shape[1:]), v.dtype)])
  return out


def concatenate(parts: list[dict]) -> dict:
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class InFlight:
  """Requests in flight (from their arrival, before their bodies are parsed), as a context
  manager around each request: a batch waits for other requests only while some are."""

  def __init__(self):
    self.count, self._lock = 0, threading.Lock()

  def __enter__(self):
    with self._lock:
      self.count += 1
    return self

  def __exit__(self, *exc):
    with self._lock:
      self.count -= 1


def joined(outputs: list):
  """Outputs of consecutive chunks as one."""
  if len(outputs) == 1:
    return outputs[0]
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


@dataclasses.dataclass
class _Pending:
  inputs: dict
  size: int
  future: concurrent.futures.Future


class Batcher:
  """See the module docstring. ``on_batch(size, padded_size)`` is told of every call."""

  def __init__(self, fn: Callable[[dict], object], max_batch_size: int = 64,
               batch_sizes: tuple[int, ...] | None = None, timeout_s: float = 0.002,
               enabled: bool = True, on_batch: Callable[[int, int], None] | None = None,
               in_flight: InFlight | None = None, name: str = "batcher"):
    self.fn, self.enabled, self.timeout_s = fn, enabled, timeout_s
    self.batch_sizes = tuple(sorted(batch_sizes or default_batch_sizes(max_batch_size)))
    self.max_batch_size = self.batch_sizes[-1]
    if max_batch_size != self.max_batch_size:
      raise ValueError(f"the largest batch size {self.max_batch_size} must be max_batch_size "
                       f"({max_batch_size})")
    self.on_batch = on_batch or (lambda size, padded: None)
    self._queue: queue.Queue = queue.Queue()
    self._carry: _Pending | None = None  # a request that did not fit the last batch
    self.in_flight = in_flight or InFlight()
    self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
    if enabled:
      self._thread.start()

  def padded_size(self, size: int) -> int:
    return next(s for s in self.batch_sizes if s >= size)

  def run(self, inputs: dict):
    """``fn`` on ``inputs`` (at most max_batch_size rows), padded; the real rows' outputs.
    Callable from any thread (the monitor's too)."""
    size = num_rows(inputs)
    padded = self.padded_size(size)
    out = self.fn(pad(inputs, padded))
    self.on_batch(size, padded)
    return jax.tree.map(lambda v: np.asarray(v)[:size], out)

  def warm_up(self, example: dict) -> None:
    """Compiles ``fn`` for every batch size, from one example's inputs (1 row)."""
    for size in self.batch_sizes:
      self.fn(pad({k: np.zeros_like(v) for k, v in example.items()}, size))

  def chunks(self, inputs: dict) -> list[dict]:
    size = num_rows(inputs)
    return [{k: v[i:i + self.max_batch_size] for k, v in inputs.items()}
            for i in range(0, size, self.max_batch_size)]

  def run_all(self, inputs: dict):
    """``run`` on inputs of any number of rows, in this thread."""
    return joined([self.run(chunk) for chunk in self.chunks(inputs)])

  async def submit(self, inputs: dict):
    """The outputs of ``inputs`` (any number of rows), computed in a batch."""
    if not self.enabled:
      return await asyncio.to_thread(self.run_all, inputs)
    futures = []
    for chunk in self.chunks(inputs):
      future = concurrent.futures.Future()
      self._queue.put(_Pending(chunk, num_rows(chunk), future))
      futures.append(asyncio.wrap_future(future))
    return joined(await asyncio.gather(*futures))

  def close(self) -> None:
    if self.enabled and self._thread.is_alive():
      self._queue.put(None)
      self._thread.join(timeout=10)

  def _gather(self) -> list[_Pending] | None:
    first = self._carry or self._queue.get()
    self._carry = None
    if first is None:
      return None
    batch, rows = [first], first.size
    deadline = time.monotonic() + self.timeout_s
    while rows < self.max_batch_size:
      try:
        if not self._queue.empty():
          item = self._queue.get_nowait()
        elif self.in_flight.count > len(batch) and time.monotonic() < deadline:
          item = self._queue.get(timeout=max(deadline - time.monotonic(), 1e-4))
        else:
          break
      except queue.Empty:
        break
      if item is None:
        self._queue.put(None)  # close after this batch
        break
      if rows + item.size > self.max_batch_size:
        self._carry = item
        break
      batch.append(item)
      rows += item.size
    return batch

  def _loop(self) -> None:
    while True:
      batch = self._gather()
      if batch is None:
        return
      try:
        out = self.run(concatenate([p.inputs for p in batch]))
      except Exception as e:  # noqa: BLE001 (every waiting request gets the error)
        for p in batch:
          p.future.set_exception(e)
        continue
      start = 0
      for p in batch:
        p.future.set_result(jax.tree.map(lambda v, s=start, n=p.size: v[s:s + n], out))
        start += p.size
