"""The evaluators' shared helpers: gathering predictions over a split, progress of long
evaluations."""
import logging

import jax.numpy as jnp
import numpy as np

from research.evaluators import base


def test_gather_keeps_real_examples_in_order_and_reports_progress(monkeypatch, caplog):
  batches = [{"x": jnp.arange(4.0) + 4 * i, "mask": jnp.asarray([1, 1, 1, float(i < 2)])}
             for i in range(3)]
  keys = []

  def predict(state, batch, rng):
    keys.append(np.asarray(rng))
    return {"double": 2 * batch["x"], "pair": (batch["x"], -batch["x"]), "mask": batch["mask"]}

  monkeypatch.setattr(base, "PROGRESS_SECS", -1.0)
  with caplog.at_level(logging.INFO):
    out = base.gather(predict, None, batches, jnp.zeros(2, jnp.uint32), name="nll (k=10)")
  np.testing.assert_array_equal(out["double"], 2 * np.asarray([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
  np.testing.assert_array_equal(out["pair"][1], -np.arange(11.0))  # pytrees of outputs too
  assert len({k.tobytes() for k in keys}) == 3  # a key per batch
  assert "nll (k=10): batch 1/3" in caplog.text and "batch 2/3" in caplog.text
  assert "batch 3/3" not in caplog.text  # the last batch is the result, not progress

