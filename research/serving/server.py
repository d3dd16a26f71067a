"""An HTTP model server for export directories (research/serving/export.py), with TF Serving's
REST conventions, server-side batching and a drift monitor.

    python launch.py --mode=serve --export_dir=workdirs/cnn/export \\
        [--monitor_dir=workdirs/vae/export] [--port=8501] [--serve.max_batch_size=64]

    POST /v1/models/NAME:predict   {"instances": [...]} -> {"predictions": [...]}
                                   (research/serving/rest.py: images, texts, tabular rows;
                                   "signature_name" picks another exported function)
    GET  /v1/models/NAME           TF Serving's model status (the export's step as version)
    GET  /v1/models/NAME/metadata  functions, inputs, label names, raw input format
    GET  /v1/models/NAME/drift     the drift monitor (research/serving/drift.py); ?wait=true
                                   first lets it finish what it was given
    POST /v1/models/NAME/drift/reset   an empty window (after an acknowledged alarm)
    GET  /healthz                  {"status": "ok"} once every function is compiled
    GET  /metrics                  Prometheus text: requests, latency, batch sizes, drift

NAME is the export's config name with characters other than letters, digits, ``_.-`` as
``_`` (``logreg:penguins`` -> ``logreg_penguins``), or ``--model_name``. A VAE export given
as ``--monitor_dir`` is served too, and scores every input the classifiers get: its -ELBO
is the drift monitor's generative test. Every error is a 4xx (5xx for the server's own
failures) with ``{"error": "one line"}``, and the server keeps serving.
"""
import asyncio
import dataclasses
import itertools
import json
import os
import queue
import re
import threading
import time

import numpy as np
from absl import logging

from research.serving import batching, drift, rest, runtime

DEFAULT_PORT = 8501  # TF Serving's REST port
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclasses.dataclass
class Options:
  """Serving options (``--serve.FIELD``)."""
  max_batch_size: int = 64  # examples per call
  batch_sizes: tuple = ()  # the compiled sizes; () powers of two up to max_batch_size
  batch_timeout_ms: float = 2.0  # how long a batch waits for more requests
  batching: bool = True  # False: one call per request (the load test's baseline)
  max_request_bytes: int = 8 << 20
  max_instances: int = 1024
  drift_window: int = drift.WINDOW
  drift_stride: int = drift.STRIDE
  drift_alpha: float = drift.ALPHA
  monitor: bool = True  # False: no drift monitor

  def drift_options(self) -> drift.Options:
    return drift.Options(self.drift_window, self.drift_stride, self.drift_alpha)


def model_name(served: runtime.Served) -> str:
  """The export's config name (a config file: its name without .py), as a URL segment."""
  config, _, arg = (served.meta.get("config") or "model").partition(":")
  config = os.path.splitext(os.path.basename(config))[0] if config.endswith(".py") else config
  return re.sub(r"[^\w.-]+", "_", f"{config}:{arg}" if arg else config)


class Metrics:
  """The server's Prometheus metrics, in a registry of its own."""

  def __init__(self, max_batch_size: int):
    import prometheus_client as prom
    self.prom, self.registry = prom, prom.CollectorRegistry()
    kw = {"registry": self.registry}
    self.requests = prom.Counter("serving_requests", "Requests answered.",
                                 ["model", "code"], **kw)
    self.latency = prom.Histogram("serving_request_latency_seconds",
                                  "Predict latency from arrival to answer.", ["model"],
                                  buckets=LATENCY_BUCKETS, **kw)
    self.instances = prom.Counter("serving_instances", "Examples predicted.", ["model"], **kw)
    self.batch_size = prom.Histogram(
        "serving_batch_size", "Examples per model call (before padding).",
        ["model", "function"], buckets=batching.default_batch_sizes(max_batch_size), **kw)
    self.padded = prom.Counter("serving_padded_rows", "Zero rows added to reach a compiled "
                               "batch size.", ["model", "function"], **kw)
    self.p_value = prom.Gauge("drift_p_value", "The last check's p-value per test.",
                              ["model", "test"], **kw)
    self.statistic = prom.Gauge("drift_statistic", "The last check's test statistic "
                                "(KS distance or chi-square).", ["model", "test"], **kw)
    self.psi = prom.Gauge("drift_psi", "The last check's population stability index "
                          "(binned tests).", ["model", "test"], **kw)
    self.flagged = prom.Gauge("drift_flagged", "1 when the last check flagged drift.",
                              ["model"], **kw)
    self.checks = prom.Counter("drift_checks", "Checks of the window.", ["model"], **kw)
    self.alarms = prom.Counter("drift_alarms", "Checks that flagged drift.", ["model"], **kw)
    self.examples = prom.Gauge("drift_examples", "Examples the monitor has seen.",
                               ["model"], **kw)

  def text(self) -> bytes:
    return self.prom.generate_latest(self.registry)

  def record_check(self, model: str, check: drift.Check, examples: int) -> None:
    for test, result in check.results.items():
      self.p_value.labels(model, test).set(result["p_value"])
      self.statistic.labels(model, test).set(result["statistic"])
      if "psi" in result:
        self.psi.labels(model, test).set(result["psi"])
    self.flagged.labels(model).set(float(check.drift))
    self.checks.labels(model).inc()
    self.alarms.labels(model).inc(float(check.drift))
    self.examples.labels(model).set(examples)


class Model:
  """One export, served: a batcher per function, all compiled."""

  def __init__(self, directory: str, options: Options, metrics: Metrics, name: str | None = None):
    self.served = runtime.load(directory)
    self.name = name or model_name(self.served)
    self.kind = self.served.meta["kind"]
    self.in_flight = batching.InFlight()
    self.batchers = {}
    for function in self.served.functions:
      def on_batch(size, padded, f=function):
        metrics.batch_size.labels(self.name, f).observe(size)
        metrics.padded.labels(self.name, f).inc(padded - size)
      self.batchers[function] = batching.Batcher(
          lambda inputs, f=function: self.served.call(f, inputs), options.max_batch_size,
          options.batch_sizes or None, options.batch_timeout_ms / 1000, options.batching,
          on_batch, self.in_flight, name=f"{self.name}:{function}")
    self.monitor = None

  def warm_up(self) -> float:
    """Compiles every function for every batch size; returns the seconds it took."""
    start = time.perf_counter()
    example = {k: np.zeros((1, *shape), dtype) for k, (shape, dtype) in
               self.served.input_spec.items()}
    for batcher in self.batchers.values():
      batcher.warm_up(example)
    return time.perf_counter() - start

  def close(self) -> None:
    for batcher in self.batchers.values():
      batcher.close()
    if self.monitor is not None:
      self.monitor.close()

  def status(self) -> dict:
    return {"model_version_status": [{
        "version": str(self.served.meta["step"]), "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}

  def metadata(self) -> dict:
    meta = self.served.meta
    return {"model_spec": {"name": self.name, "signature_name": meta["default_function"],
                           "version": str(meta["step"])},
            "metadata": {k: meta.get(k) for k in (
                "config", "kind", "dataset", "functions", "default_function", "inputs",
                "raw_inputs", "label_names", "platforms", "created")}}


class Monitor:
  """A model's drift monitor, in a thread of its own: requests hand it their inputs and the
  default function's outputs and go on; it scores them with the generative model (if any),
  runs the checks, updates the metrics and logs alarms."""

  def __init__(self, model: Model, options: Options, metrics: Metrics,
               generative: Model | None = None):
    reference = model.served.reference
    if reference is None:
      raise runtime.ExportError(f"{model.served.directory} has no reference.json: export it "
                                f"again for a drift monitor")
    self.model, self.metrics, self.generative = model, metrics, generative
    self.default = model.served.meta["default_function"]
    self.multilabel = bool(reference["score"].get("multilabel"))
    self.drift = drift.DriftMonitor(
        drift.reference_tests(reference, generative and generative.served.reference),
        options.drift_options())
    self._queue: queue.Queue = queue.Queue()
    self._lock = threading.Lock()
    self._thread = threading.Thread(target=self._loop, name=f"{model.name}:drift", daemon=True)
    self._thread.start()

  def submit(self, parsed: rest.Parsed, outputs) -> None:
    self._queue.put((parsed, outputs if parsed.function == self.default else None))

  def flush(self) -> None:
    self._queue.join()

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join(timeout=10)

  def state(self) -> dict:
    with self._lock:
      return self.drift.state()

  def reset(self) -> None:
    with self._lock:
      self.drift.reset()

  def _values(self, items: list) -> dict:
    inputs = batching.concatenate([p.inputs for p, _ in items])
    outputs = [out if out is not None else self.model.batchers[self.default].run_all(p.inputs)
               for p, out in items]
    outputs = np.concatenate(outputs)
    columns = None
    if items[0][0].columns is not None:
      columns = {k: list(itertools.chain.from_iterable(p.columns[k] for p, _ in items))
                 for k in items[0][0].columns}
    neg_elbo = None
    if self.generative is not None:
      scored = {k: inputs[k] for k in self.generative.served.input_spec}
      neg_elbo = -self.generative.batchers["elbo"].run_all(scored)
    elif self.model.kind == "vae":
      neg_elbo = -outputs
    probs = outputs if self.model.kind == "classifier" else None
    return drift.traffic_values(self.drift.tests, probs=probs, inputs=inputs, columns=columns,
                                neg_elbo=neg_elbo, multilabel=self.multilabel)

  def _loop(self) -> None:
    while True:
      items = [self._queue.get()]
      while not self._queue.empty():  # what waits is checked together
        items.append(self._queue.get_nowait())
      stop = any(item is None for item in items)
      items = [item for item in items if item is not None]
      try:
        if items:
          self._observe(items)
      except Exception:  # noqa: BLE001 (the monitor must not stop the server)
        logging.exception("drift monitor of %s failed on a batch", self.model.name)
      for _ in range(len(items) + stop):
        self._queue.task_done()
      if stop:
        return

  def _observe(self, items: list) -> None:
    values = self._values(items)
    with self._lock:
      checks = self.drift.observe(values)
      examples = self.drift.examples
    for check in checks:
      self.metrics.record_check(self.model.name, check, examples)
      if check.drift:
        logging.warning("drift: model %s, %d examples seen: %s", self.model.name,
                        check.examples, ", ".join(
                            f"{n} p={check.results[n]['p_value']:.2g}" for n in check.failing()))


def load_models(export_dirs, monitor_dir: str | None, options: Options, metrics: Metrics,
                names=None) -> dict:
  """The served models by name, compiled, each with its drift monitor."""
  models = {}
  for i, directory in enumerate(export_dirs):
    model = Model(directory, options, metrics, names[i] if names else None)
    models[model.name] = model
  generative = None
  if monitor_dir:
    generative = Model(monitor_dir, options, metrics)
    if generative.kind != "vae":
      raise runtime.ExportError(f"--monitor_dir {monitor_dir} is a {generative.kind} export; the "
                                f"generative monitor is a VAE's")
    models.setdefault(generative.name, generative)
  if len(models) != len(export_dirs) + bool(monitor_dir):
    raise runtime.ExportError(f"two exports have the same name {sorted(models)}: pass "
                              f"--model_name")
  for model in models.values():
    seconds = model.warm_up()
    logging.info("model %s: %s compiled for batch sizes %s in %.1f s", model.name,
                 ", ".join(model.batchers), next(iter(model.batchers.values())).batch_sizes,
                 seconds)
    if not options.monitor:
      continue
    with_generative = generative if (
        model.kind == "classifier" and generative is not None
        and all(model.served.input_spec.get(k) == spec
                for k, spec in generative.served.input_spec.items())) else None
    if model.kind == "classifier" and generative is not None and with_generative is None:
      logging.warning("model %s: its inputs are not the VAE monitor's %s; no generative test",
                      model.name, generative.served.input_spec)
    model.monitor = Monitor(model, options, metrics, with_generative)
  return models


def error(message: str, status: int):
  from fastapi.responses import JSONResponse
  return JSONResponse({"error": " ".join(str(message).split())[:1000]}, status_code=status)


async def read_body(request, limit: int) -> bytes:
  """The body, refused (413) past ``limit`` bytes, before reading it when its length is given."""
  length = request.headers.get("content-length")
  if length is not None and length.isdigit() and int(length) > limit:
    raise rest.BadRequest(f"payload of {length} bytes; at most {limit}", 413)
  body = bytearray()
  async for chunk in request.stream():
    body += chunk
    if len(body) > limit:
      raise rest.BadRequest(f"payload over {limit} bytes", 413)
  return bytes(body)


def create_app(export_dirs, monitor_dir: str | None = None, options: Options = Options(),
               names=None):
  """The FastAPI app serving ``export_dirs`` (every function compiled before it returns)."""
  import contextlib

  from fastapi import FastAPI, Request
  from fastapi.exceptions import RequestValidationError
  from fastapi.responses import JSONResponse, Response
  from starlette.exceptions import HTTPException

  metrics = Metrics(options.max_batch_size)
  models = load_models(export_dirs, monitor_dir, options, metrics, names)

  @contextlib.asynccontextmanager
  async def lifespan(_):
    yield
    for model in models.values():
      model.close()

  app = FastAPI(title="research model server", lifespan=lifespan)
  app.state.models, app.state.metrics, app.state.options = models, metrics, options

  @app.exception_handler(rest.BadRequest)
  async def bad_request(_, e: rest.BadRequest):
    return error(str(e), e.status)

  @app.exception_handler(HTTPException)
  async def http_error(_, e: HTTPException):
    return error(e.detail, e.status_code)

  @app.exception_handler(RequestValidationError)
  async def invalid(_, e: RequestValidationError):
    return error(f"invalid request: {e.errors()[:1]}", 400)

  @app.exception_handler(Exception)
  async def failure(_, e: Exception):
    logging.exception("request failed")
    return error(f"internal error: {type(e).__name__}: {e}", 500)

  def get(name: str) -> Model:
    if name not in models:
      raise rest.BadRequest(f"no model {name!r}; this server has {sorted(models)}", 404)
    return models[name]

  @app.get("/healthz")
  async def healthz():
    return {"status": "ok", "models": sorted(models)}

  @app.get("/metrics")
  async def prometheus():
    return Response(metrics.text(), media_type=metrics.prom.CONTENT_TYPE_LATEST)

  @app.get("/v1/models/{name}")
  async def status(name: str):
    return get(name).status()

  @app.get("/v1/models/{name}/metadata")
  async def metadata(name: str):
    return get(name).metadata()

  def monitor_of(name: str) -> Monitor:
    model = get(name)
    if model.monitor is None:
      raise rest.BadRequest(f"model {name!r} has no drift monitor (--serve.monitor=false)", 404)
    return model.monitor

  @app.get("/v1/models/{name}/drift")
  async def drift_state(name: str, wait: bool = False):
    monitor = monitor_of(name)
    if wait:
      await asyncio.to_thread(monitor.flush)
    return monitor.state()

  @app.post("/v1/models/{name}/drift/reset")
  async def drift_reset(name: str):
    monitor = monitor_of(name)
    await asyncio.to_thread(monitor.flush)
    monitor.reset()
    return monitor.state()

  @app.post("/v1/models/{spec}")
  async def predict(spec: str, request: Request):
    start = time.perf_counter()
    name, _, verb = spec.partition(":")
    label = name if name in models else "(unknown)"
    code = 200
    try:
      model = get(name)
      if verb != "predict":
        raise rest.BadRequest(f"unknown verb {verb!r}: POST /v1/models/{name}:predict", 404)
      with model.in_flight:
        body = await read_body(request, options.max_request_bytes)
        parsed = rest.parse_predict(body, model.served, options.max_instances)
        outputs = await model.batchers[parsed.function].submit(parsed.inputs)
      if model.monitor is not None:
        model.monitor.submit(parsed, outputs)
      metrics.instances.labels(name).inc(parsed.size)
      return Response(json.dumps({"predictions": rest.predictions(outputs)}),
                      media_type="application/json")
    except rest.BadRequest as e:
      code = e.status
      raise
    except Exception:
      code = 500
      raise
    finally:
      metrics.requests.labels(label, str(code)).inc()
      if code == 200:
        metrics.latency.labels(label).observe(time.perf_counter() - start)

  return app


def serve(export_dirs, monitor_dir: str | None = None, host: str = "127.0.0.1",
          port: int = DEFAULT_PORT, options: Options = Options(), names=None) -> None:
  """Serves until interrupted (uvicorn handles SIGINT and SIGTERM: in-flight requests finish)."""
  import uvicorn
  app = create_app(export_dirs, monitor_dir, options, names)
  for name in app.state.models:
    print(f"serving {name}: POST http://{host}:{port}/v1/models/{name}:predict", flush=True)
  print(f"metrics: http://{host}:{port}/metrics", flush=True)
  uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
