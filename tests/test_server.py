"""The model server (research/serving/server.py) answering a real HTTP client on loopback:
predictions equal the export's, with and without server-side batching; each bad input is a
4xx with a one-line JSON error and the server goes on; the drift monitor flags a noised
stream within one window and stays quiet on in-distribution traffic; its tests hold their
false-alarm rate (research/serving/drift.py)."""
import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client import parser
from scipy import stats

from research.data import pipeline
from research.serving import batching, drift, export, rest, runtime, server
from research.train import loop, restore
from tests.conftest import ROOT, error_lines, free_port, load_config, run_launcher

RUNS = {
    "cnn": ("digits", {"model.conv_features": (8,), "model.dense_features": (16,)}),
    "logreg": ("penguins", {}),
    "vae": ("digits", {"model.latent_dim": 3, "evals.nll.num_samples": 8, "evals.nll.chunk": 8}),
}
WINDOW = 40
OPTIONS = server.Options(max_batch_size=16, batch_timeout_ms=20.0, max_request_bytes=64 << 10,
                         max_instances=100, drift_window=WINDOW, drift_stride=WINDOW // 2,
                         drift_alpha=0.01)


@pytest.fixture(scope="module")
def exports(data_dir, tmp_path_factory):
  """cnn:digits, logreg:penguins and vae:digits, trained 20 steps and exported (no SavedModel)."""
  out = {}
  for name, (arg, overrides) in RUNS.items():
    workdir = str(tmp_path_factory.mktemp(name))
    loop.train_and_evaluate(load_config(name, arg, data_dir=data_dir, **overrides), workdir,
                            config_name=f"{name}:{arg}")  # served as NAME_ARG
    export.export(workdir, saved_model=False)
    out[name] = (workdir, os.path.join(workdir, "export"))
  return out


@contextlib.contextmanager
def serving(app):
  """``app`` under uvicorn in a thread on a free loopback port; yields its base URL."""
  import uvicorn
  config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                          access_log=False)
  instance = uvicorn.Server(config)
  thread = threading.Thread(target=instance.run, daemon=True)
  thread.start()
  deadline = time.monotonic() + 30
  while not instance.started:
    assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
    time.sleep(0.01)
  try:
    yield f"http://127.0.0.1:{config.port}"
  finally:
    instance.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def url(exports):
  """One server: the cnn and logreg exports, the VAE as the cnn's generative monitor."""
  app = server.create_app([exports["cnn"][1], exports["logreg"][1]], exports["vae"][1], OPTIONS)
  with serving(app) as base:
    yield base


def client(base: str) -> httpx.Client:
  return httpx.Client(base_url=base, trust_env=False, timeout=60)


@functools.cache  # read once per run: the tests only slice it
def raw_test_split(workdir: str) -> dict:
  run = restore.restore(workdir)
  return pipeline.load_split(run.config.data, run.config.data.test_split)


def post(http, model: str, body) -> httpx.Response:
  content = body if isinstance(body, bytes) else json.dumps(body).encode()
  return http.post(f"/v1/models/{model}:predict", content=content,
                   headers={"content-type": "application/json"})


def test_predictions_equal_the_export_and_concurrent_requests_are_batched(exports, url):
  images = raw_test_split(exports["cnn"][0])["image"][:48]
  served = runtime.load(exports["cnn"][1])
  expected = served.predict("probs", {"image": images})
  with client(url) as http:
    assert http.get("/healthz").json()["status"] == "ok"
    status = http.get("/v1/models/cnn_digits").json()["model_version_status"][0]
    assert status["state"] == "AVAILABLE" and status["version"] == "20"
    meta = http.get("/v1/models/cnn_digits/metadata").json()["metadata"]
    assert meta["label_names"] == [str(i) for i in range(10)]
    got = post(http, "cnn_digits", {"instances": images[:5, ..., 0].tolist()})  # channel left out
    np.testing.assert_allclose(got.json()["predictions"], expected[:5], rtol=1e-6, atol=1e-7)
    logits = post(http, "cnn_digits", {"instances": images[:3].tolist(), "signature_name": "logits"})
    np.testing.assert_allclose(logits.json()["predictions"], served.predict(
        "logits", {"image": images[:3]}), rtol=1e-6, atol=1e-6)
    columnar = post(http, "cnn_digits", {"inputs": {"image": images[:2].tolist()}})
    np.testing.assert_allclose(columnar.json()["predictions"], expected[:2], rtol=1e-6, atol=1e-7)

  async def concurrently():  # 24 requests of 2 images at once: batches of up to 16 rows
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as http:
      return await asyncio.gather(*(http.post("/v1/models/cnn_digits:predict", json={
          "instances": images[i:i + 2].tolist()}) for i in range(0, 48, 2)))
  answers = asyncio.run(concurrently())
  got = np.concatenate([a.json()["predictions"] for a in answers])
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  with client(url) as http:
    metrics = {s.name: s for f in parser.text_string_to_metric_families(http.get("/metrics").text)
               for s in f.samples if s.labels.get("model") == "cnn_digits"
               and s.labels.get("function", "probs") == "probs"}
  batches, rows = metrics["serving_batch_size_count"].value, metrics["serving_batch_size_sum"].value
  assert rows >= 48 + 5 + 2 and batches < rows  # some calls held several requests


def test_tabular_rows_with_missing_fields_and_the_vae(exports, url):
  raw = raw_test_split(exports["logreg"][0])
  rows = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item()) for k, v in raw.items()
           if k != "label"} for i in range(4)]
  rows = [{k: v for k, v in r.items() if v != "" and v == v} for r in rows]  # no NaN, no ""
  rows[1].pop("bill_length_mm")
  rows[2]["sex"] = None
  rows.append({})
  images = raw_test_split(exports["vae"][0])["image"][:6]
  with client(url) as http:
    got = post(http, "logreg_penguins", {"instances": rows})
    vae = post(http, "vae_digits", {"instances": images.tolist()})
  assert got.status_code == 200, got.text
  np.testing.assert_allclose(got.json()["predictions"],
                             runtime.load(exports["logreg"][1]).predict("probs", rows), rtol=1e-6)
  served = runtime.load(exports["vae"][1])
  np.testing.assert_allclose(vae.json()["predictions"], served.predict("elbo", {"image": images}),
                             rtol=1e-6)
  # A VAE's exported ELBO sees each example alone: the same with or without its neighbours.
  alone = [served.predict("elbo", {"image": images[i:i + 1]})[0] for i in range(len(images))]
  np.testing.assert_allclose(vae.json()["predictions"], alone, rtol=1e-6)


BAD = [  # (model, body, status, words in the error)
    ("cnn_digits", b"{not json", 400, "malformed JSON"),
    ("cnn_digits", b'{"instances": [[[NaN]]]}', 400, "NaN"),
    ("cnn_digits", {"instances": [[[1, 2], [3, 4]]]}, 400, "shaped"),
    ("cnn_digits", {"instances": [[["a"] * 8] * 8]}, 400, "not numbers"),
    ("cnn_digits", {"instances": [[[0] * 8] * 8, [[0] * 7] * 8]}, 400, "ragged"),
    ("cnn_digits", {"instances": [[[300] * 8] * 8]}, 400, "uint8"),
    ("cnn_digits", {"instances": [[[0.5] * 8] * 8]}, 400, "integers"),
    ("cnn_digits", {"instances": [[[0] * 8] * 8] * 101}, 413, "at most 100"),
    ("cnn_digits", {"instances": []}, 400, "non-empty"),
    ("cnn_digits", {"images": []}, 400, "instances"),
    ("cnn_digits", [1, 2], 400, "JSON object"),
    ("cnn_digits", {"instances": [[[0] * 8] * 8], "signature_name": "nope"}, 400, "signature"),
    ("cnn_digits", b"[" + b"0," * 40000 + b"0]", 413, "payload"),
    ("nope", {"instances": [1]}, 404, "no model 'nope'"),
    ("logreg_penguins", {"instances": [{"islnd": "Biscoe"}]}, 400, "unknown field"),
    ("logreg_penguins", {"instances": [{"bill_length_mm": "long"}]}, 400, "numeric"),
    ("logreg_penguins", {"instances": [{"island": 3}]}, 400, "categorical"),
    ("logreg_penguins", {"instances": [[1, 2, 3]]}, 400, "object of column values"),
]


@pytest.mark.parametrize("model,body,status,words", BAD, ids=[b[3] for b in BAD])
def test_bad_input_is_a_4xx_and_the_server_goes_on(exports, url, model, body, status, words):
  image = raw_test_split(exports["cnn"][0])["image"][:1]
  with client(url) as http:
    answer = post(http, model, body)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message, message
    good = post(http, "cnn_digits", {"instances": image.tolist()})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_unknown_routes_and_verbs_are_one_line_json(url):
  with client(url) as http:
    for answer in (http.get("/v1/nothing"), http.post("/v1/models/cnn_digits:classify"),
                   http.get("/v1/models/nope")):
      assert answer.status_code == 404 and set(answer.json()) == {"error"}, answer.text


def drift_state(http, model="cnn_digits") -> dict:
  return http.get(f"/v1/models/{model}/drift", params={"wait": "true"}).json()


def test_drift_flags_noised_digits_within_one_window_and_not_clean_ones(exports, url):
  images = raw_test_split(exports["cnn"][0])["image"]
  clean = images[:4 * WINDOW]
  noised = np.clip(images[:WINDOW].astype(int) + np.random.default_rng(0).integers(
      0, 128, images[:WINDOW].shape), 0, 255)
  with client(url) as http:
    before = drift_state(http)
    assert set(before["tests"]) == {"confidence", "confidence_tail", "predicted_class",
                                    "input:image", "generative", "generative_tail"}
    http.post("/v1/models/cnn_digits/drift/reset")
    for i in range(0, len(clean), 4):
      post(http, "cnn_digits", {"instances": clean[i:i + 4].tolist()})
    quiet = drift_state(http)
    assert quiet["checks"] > before["checks"] and quiet["alarms"] == before["alarms"], quiet
    assert quiet["drift"] is False
    for i in range(0, WINDOW, 4):
      post(http, "cnn_digits", {"instances": noised[i:i + 4].tolist()})
    flagged = drift_state(http)
    assert flagged["drift"] is True and flagged["alarms"] > quiet["alarms"], flagged["last_check"]
    assert {"generative", "generative_tail"} & set(flagged["last_check"]["failing"])
    assert flagged["examples"] - quiet["examples"] <= WINDOW  # within one window of the switch
    metrics = {(s.name, s.labels.get("test")): s.value
               for f in parser.text_string_to_metric_families(http.get("/metrics").text)
               for s in f.samples if s.labels.get("model") == "cnn_digits"}
  assert metrics[("drift_flagged", None)] == 1.0
  assert min(metrics[("drift_p_value", "generative")],
             metrics[("drift_p_value", "generative_tail")]) < OPTIONS.drift_alpha / 6
  assert metrics[("drift_alarms_total", None)] >= 1


def test_the_tests_hold_their_false_alarm_rate_and_detect_a_shift():
  """Undrifted windows (fresh draws from the reference's distribution, windows disjoint):
  alarms at most alpha of the checks (binomial slack); a shifted stream flagged at once."""
  rng = np.random.default_rng(0)
  alpha, window, checks = 0.05, 200, 400
  ref_values = rng.normal(size=2000)
  edges = np.quantile(ref_values, np.linspace(0, 1, 11))
  categories = np.array(["a", "b", "c"])
  cat_p = np.array([0.5, 0.3, 0.2])
  tests = {"score": drift.KSTest(ref_values), "tail": drift.TailTest(ref_values, 0.99),
           "numeric": drift.BinnedTest(drift.numeric_binner(edges, True),
                                       [*np.full(10, 0.095), 0.05], 2000),
           "category": drift.column_test({"kind": "categorical", "missing_fraction": 0.0,
                                          "fractions": dict(zip(categories, cat_p)),
                                          "count_rows": 2000})}
  monitor = drift.DriftMonitor(tests, drift.Options(window, window, alpha))

  def stream(size, shift=0.0):
    numeric = rng.normal(size=size) + shift
    numeric[rng.random(size) < 0.05] = np.nan
    score = rng.normal(size=size) + shift
    return {"score": score, "tail": score, "numeric": numeric,
            "category": rng.choice(categories, size, p=cat_p)}
  results = [c for _ in range(checks) for c in monitor.observe(stream(window))]
  assert len(results) == checks == monitor.checks
  rate = np.mean([c.drift for c in results])
  assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / checks), rate
  assert monitor.threshold == alpha / 4
  shifted = monitor.observe(stream(window, shift=0.5))
  assert len(shifted) == 1 and shifted[0].drift and {"score", "numeric"} <= set(shifted[0].failing())


def test_the_tail_test_catches_a_few_far_off_examples_that_ks_misses():
  rng = np.random.default_rng(1)
  reference = rng.normal(size=2000)
  window = rng.normal(size=500)
  window[:25] = rng.normal(8.0, 1.0, 25)  # 5% from far away
  assert drift.KSTest(reference)(window)["p_value"] > 0.01
  tail = drift.TailTest(reference, 0.99)(window)
  assert tail["p_value"] < 1e-6 and tail["statistic"] >= 0.05
  table = [[int((window > np.quantile(reference, 0.99)).sum()), 0], [20, 1980]]
  table[0][1] = 500 - table[0][0]
  assert tail["p_value"] == pytest.approx(stats.fisher_exact(table, alternative="greater")[1])


def test_binned_test_and_psi_against_scipy_and_the_formula():
  fractions = np.array([0.2, 0.3, 0.5])
  test = drift.BinnedTest(lambda v: np.asarray(v, np.int64), fractions, 1000)
  values = np.repeat([0, 1, 2], [30, 30, 40])
  result = test(values)
  table = np.array([[30, 30, 40], fractions * 1000])
  chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
  assert result["statistic"] == pytest.approx(chi2) and result["p_value"] == pytest.approx(p)
  w = np.array([0.3, 0.3, 0.4])
  assert result["psi"] == pytest.approx(np.sum((w - fractions) * np.log(w / fractions)))


def test_the_batcher_pads_splits_and_answers_each_request_its_rows():
  calls = []

  def fn(inputs):
    calls.append(len(inputs["x"]))
    return {"y": inputs["x"] * 2}
  batcher = batching.Batcher(fn, max_batch_size=8, timeout_s=0.05)
  assert batcher.batch_sizes == (1, 2, 4, 8)

  async def many():
    with batcher.in_flight, batcher.in_flight, batcher.in_flight:  # three requests arriving
      return await asyncio.gather(batcher.submit({"x": np.arange(3.0)}),
                                  batcher.submit({"x": np.arange(10.0, 12.0)}),
                                  batcher.submit({"x": np.arange(20.0, 31.0)}))
  a, b, c = asyncio.run(many())
  batcher.close()
  np.testing.assert_array_equal(a["y"], np.arange(3.0) * 2)
  np.testing.assert_array_equal(b["y"], np.arange(10.0, 12.0) * 2)
  np.testing.assert_array_equal(c["y"], np.arange(20.0, 31.0) * 2)
  assert set(calls) <= {1, 2, 4, 8} and sum(calls) >= 16 and len(calls) <= 3


def test_the_launcher_serves_an_export_until_terminated(exports):
  port = free_port()
  proc = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "launch.py"), "--mode=serve",
       f"--export_dir={exports['logreg'][1]}", f"--port={port}", "--serve.max_batch_size=4"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  try:
    with client(f"http://127.0.0.1:{port}") as http:
      deadline = time.monotonic() + 120
      while True:
        try:
          if http.get("/healthz").status_code == 200:
            break
        except httpx.TransportError:
          if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()  # first: reading the pipes of a live server would wait for ever
            pytest.fail(f"the server never answered /healthz: {proc.communicate()[1][-3000:]}")
          time.sleep(0.2)
      answer = post(http, "logreg_penguins", {"instances": [{"island": "Dream"}]})
      assert answer.status_code == 200 and len(answer.json()["predictions"][0]) == 3
  finally:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
  # uvicorn finishes the requests in flight, then re-raises the signal: SIGTERM's exit status.
  assert proc.returncode in (0, -signal.SIGTERM), err[-3000:]
  assert f"POST http://127.0.0.1:{port}/v1/models/logreg_penguins:predict" in out


def test_serve_without_an_export_dir_or_with_a_bad_option_is_one_line(tmp_path):
  for args, words in ((["--mode=serve"], "--export_dir"),
                      (["--mode=serve", f"--export_dir={tmp_path}"], "not an export directory"),
                      (["--mode=serve", f"--export_dir={tmp_path}", "--serve.max_batchsize=4"],
                       "max_batchsize")):
    proc = run_launcher(*args, timeout=120)
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr[-2000:]


def test_a_tabular_unknown_category_is_handled_as_the_export_says(exports):
  served = runtime.load(exports["logreg"][1])
  setting = served.preprocessing["tabular"]["settings"].get("unknown_category")
  parsed = rest.parse_predict(json.dumps({"instances": [{"island": "Atlantis"}]}).encode(),
                              served, 10)
  assert setting != "error" and np.isfinite(served.call("probs", parsed.inputs)).all()


def test_confidence_is_the_max_probabilitys_log_odds_without_ties_at_one():
  logits = [np.array(x) for x in ([0.0, 0.0], [2.0, 0.0], [40.0, 0.0, 1.0], [30.0, 0.0, 0.0])]
  probs = [(np.exp(x) / np.exp(x).sum()).astype(np.float32) for x in logits]
  got = [drift.confidence(p[None])[0] for p in probs]
  assert got[0] == pytest.approx(0.0) and got[1] == pytest.approx(2.0, rel=1e-6)
  assert probs[2].max() == probs[3].max() == 1.0  # float32 rounds both to 1.0
  assert got[2] == pytest.approx(40.0 - np.log(1.0 + np.e), rel=1e-5)
  assert got[3] == pytest.approx(30.0 - np.log(2.0), rel=1e-5) and got[2] > got[3]


def test_model_names_are_url_segments():
  def named(config):
    return server.model_name(type("Served", (), {"meta": {"config": config}}))
  assert named("logreg:penguins") == "logreg_penguins" and named("cnn") == "cnn"
  assert named("/tmp/search/best_config.py") == "best_config"
  assert named("configs/cnn.py:dataset=digits") == "cnn_dataset_digits"
