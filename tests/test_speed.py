"""Speed options change how steps run, never what they compute: several steps per call,
gradient accumulation, mixed precision, profiling, the compilation cache."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import feeds
from research.core import state as state_lib
from research import errors
from research.core import optim, step as step_lib, writers
from research.train import loop, validation
from research.data import preprocess
from research.tasks import base as tasks_base
from tests.conftest import load_config
from tests.test_resume import Interrupted, final_state, interrupt_at


def logged(workdir):
  """The metrics a run logged, without timings."""
  records = [{k: v for k, v in r.items() if "/" in k and "per_sec" not in k}
             for r in writers.read_metrics(workdir)]
  return [r for r in records if r]


@pytest.mark.parametrize("name, exact", [
    ("vae", True),  # randomness per step (binarization, sampling): bit for bit
    ("cnn_strong", False)])  # batch-norm state through the scan: to float rounding
def test_steps_per_call_equals_step_by_step(name, exact, data_dir, tmp_path):
  config = load_config(name, data_dir=data_dir, total_steps=10, log_every_steps=4,
                       eval_every_steps=8, checkpoint_every_steps=8)
  one = loop.train_and_evaluate(config, str(tmp_path / "one"))
  config.steps_per_call = 4  # 10 steps: two calls of 4, then one of 2
  many = loop.train_and_evaluate(config, str(tmp_path / "many"))
  check = np.testing.assert_array_equal if exact else functools.partial(
      np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  a, b = final_state(str(tmp_path / "one"), 10), final_state(str(tmp_path / "many"), 10)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    check(x, y)
  first, second = logged(tmp_path / "one"), logged(tmp_path / "many")
  assert [sorted(r) for r in first] == [sorted(r) for r in second] and len(first) == 3  # 4, 8, 10
  for r, q in zip(first + [one], second + [many]):
    check(np.array([r[k] for k in sorted(r)]), np.array([q[k] for k in sorted(r)]))


def test_call_ends_fall_on_multiples_of_steps_per_call():
  assert list(feeds.call_ends(0, 10, 4)) == [4, 8, 10]
  assert list(feeds.call_ends(8, 10, 4)) == [10]
  assert list(feeds.call_ends(6, 13, 4)) == [8, 12, 13]
  assert list(feeds.call_ends(0, 3, 1)) == [1, 2, 3]
  assert list(feeds.call_ends(5, 5, 4)) == []
  assert next(feeds.call_ends(0, 10 ** 15, 10)) == 10  # lazy: no list of 10^14 calls


def cnn_step(data_dir, accumulate: int, microbatches: int = 1):
  """The CNN's train step (no batch norm, no dropout): SGD with momentum, a constant rate."""
  config = load_config("cnn", data_dir=data_dir)
  config.optimizer.update(name="sgd", learning_rate=0.1, schedule="constant",
                          accumulate_steps=accumulate)
  task = tasks_base.make_task(config)
  optimizer = optim.make_optimizer(config.optimizer, 100)
  preprocess_fn = preprocess.parse(config.data.preprocess)
  return task, optimizer, preprocess_fn, jax.jit(
      step_lib.make_train_step(task, optimizer, preprocess_fn, microbatches=microbatches))


def random_digits(size: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (size, 8, 8, 1)).astype(np.uint8),
          "label": rng.integers(0, 10, (size,)).astype(np.int64)}


def test_microbatches_equal_the_whole_batch(data_dir):
  """The step's gradient over 4 microbatches in turn is the whole batch's: same update,
  same per-example metrics."""
  batch = random_digits(64)
  results = {}
  for microbatches in (1, 4):
    task, optimizer, preprocess_fn, train_step = cnn_step(data_dir, 1, microbatches)
    state = state_lib.init_state(task, optimizer, preprocess_fn,
                            {n: v[:1] for n, v in batch.items()}, seed=0)
    for _ in range(3):
      state, metrics = train_step(state, batch)
    results[microbatches] = state, metrics.compute()
  (whole, whole_metrics), (parts, parts_metrics) = results[1], results[4]
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(parts.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert sorted(whole_metrics) == sorted(parts_metrics)
  for key in whole_metrics:
    np.testing.assert_allclose(whole_metrics[key], parts_metrics[key], rtol=1e-5, err_msg=key)


def test_microbatch_split_round_trips_and_keeps_device_blocks():
  batch = {"x": np.arange(32).reshape(16, 2)}
  parts = step_lib.split_microbatches(batch, 4)
  assert parts["x"].shape == (4, 4, 2)
  # Microbatch j takes examples j, j + 4, ...: one from each block of 4 (a device's shard).
  np.testing.assert_array_equal(parts["x"][1, :, 0], [2, 10, 18, 26])
  np.testing.assert_array_equal(step_lib.merge_microbatches(parts)["x"], batch["x"])


def test_accumulated_micro_batches_equal_one_big_batch(data_dir):
  k, micro = 4, 16
  batch = random_digits(k * micro)
  states = {}
  for accumulate in (1, k):
    task, optimizer, preprocess_fn, train_step = cnn_step(data_dir, accumulate)
    state = state_lib.init_state(task, optimizer, preprocess_fn,
                            {n: v[:1] for n, v in batch.items()}, seed=0)
    if accumulate == 1:
      state, _ = train_step(state, batch)
    else:
      for i in range(k):
        state, _ = train_step(state, {n: v[i * micro:(i + 1) * micro] for n, v in batch.items()})
    states[accumulate] = state
  before = state_lib.init_state(task, optimizer, preprocess_fn, {n: v[:1] for n, v in batch.items()}, 0)
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b).max(), states[1].params,
                                       before.params))
  assert min(float(m) for m in moved) > 0  # the update happened
  for a, b in zip(jax.tree.leaves(states[1].params), jax.tree.leaves(states[k].params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_keeps_float32_parameters_and_close_losses(data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, total_steps=10, log_every_steps=10)
  full = loop.train_and_evaluate(config, str(tmp_path / "f32"))
  config.precision = "bfloat16"
  half = loop.train_and_evaluate(config, str(tmp_path / "bf16"))
  assert abs(full["test/loss"] - half["test/loss"]) < 0.05 * full["test/loss"]
  state = final_state(str(tmp_path / "bf16"), 10)
  assert {x.dtype for x in jax.tree.leaves(state["params"])} == {np.dtype("float32")}


def test_profile_steps_writes_a_trace_and_cache_dir_fills(data_dir, tmp_path):
  cache = tmp_path / "cache"
  config = load_config("logreg", data_dir=data_dir, total_steps=10, profile_steps="3:6",
                       compilation_cache_dir=str(cache))
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  traces = [f for _, _, files in os.walk(tmp_path / "run" / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces
  # The cache itself starts once per process (the suite's own is already running).
  assert jax.config.jax_compilation_cache_dir == str(cache)


@pytest.mark.parametrize("field, value", [
    ("steps_per_call", 0), ("steps_per_call", 3), ("precision", "float16"),
    ("profile_steps", "5"), ("profile_steps", "6:2"), ("optimizer.accumulate_steps", 0),
    ("microbatch_size", 48), ("microbatch_size", -1)])
def test_bad_speed_options_are_one_line_errors(field, value, data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, **{field: value})
  with pytest.raises(errors.ConfigError, match=field.split(".")[-1]) as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)


def test_steps_per_call_resumes_exactly(data_dir, tmp_path):
  config = load_config("vae", data_dir=data_dir, total_steps=20, steps_per_call=5,
                       log_every_steps=5, eval_every_steps=10, checkpoint_every_steps=10)
  expected = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, str(tmp_path / "resumed"), step_hook=interrupt_at(15))
  assert loop.train_and_evaluate(config, str(tmp_path / "resumed")) == expected
  a, b = final_state(str(tmp_path / "straight"), 20), final_state(str(tmp_path / "resumed"), 20)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
