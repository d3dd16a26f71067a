"""TF Serving's REST request format, read strictly for an export (research/serving/runtime.py).

    POST /v1/models/NAME:predict
    {"instances": [...], "signature_name": "probs"}      # signature_name optional
    {"inputs": ...}                                     # the columnar form, also accepted

An instance is, by the export's inputs: images and other arrays as nested lists of numbers
(one example each; for several inputs an object ``{"image": ..., "label": ...}``); text as a
string (or ``{FEATURE: string}``); a tabular row as an object of raw column values, a field
missing or null where unknown. The answer is ``{"predictions": [...]}``, one per instance.

Anything else is a ``BadRequest`` with a one-line message: malformed JSON, NaN or infinite
numbers (JSON has none; for a missing tabular value leave the field out or send null), a
wrong shape or type, a pixel outside the input's integer range, an unknown field or
signature, too many instances.
"""
import dataclasses
import json
import math

import numpy as np

from research.serving import runtime


class BadRequest(ValueError):
  """A request the server answers with a 4xx and ``{"error": message}``."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class Parsed:
  """A predict request, read: the function, its encoded inputs, the raw tabular columns
  (for the drift monitor) and the number of instances."""
  function: str
  inputs: dict
  columns: dict | None
  size: int


def _no_constant(name):
  raise BadRequest(f"{name} is not valid JSON (for a missing tabular value leave the field out "
                   f"or send null)")


def loads(body: bytes):
  try:
    return json.loads(body, parse_constant=_no_constant)
  except BadRequest:
    raise
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BadRequest(f"malformed JSON: {e}") from None


def _array(values, name: str, shape: tuple, dtype: str) -> np.ndarray:
  """Instances' values for one array input, checked against (shape, dtype) per example;
  a trailing channel of 1 may be left out."""
  try:
    array = np.asarray(values)
  except ValueError:
    array = np.asarray(values, dtype=object)
  if array.dtype.kind not in "biuf":
    raise BadRequest(f"input {name!r}: every instance must be numbers shaped {list(shape)} "
                     f"(ragged, or not numbers)")
  if array.shape[1:] != shape and shape[-1:] == (1,) and array.shape[1:] == shape[:-1]:
    array = array[..., None]
  if array.shape[1:] != shape:
    raise BadRequest(f"input {name!r}: an instance is shaped {list(array.shape[1:])}; the model "
                     f"takes {list(shape)}")
  if array.dtype.kind == "f" and not np.isfinite(array).all():
    raise BadRequest(f"input {name!r}: NaN or infinite values")
  target = np.dtype(dtype)
  if target.kind in "iu":
    info = np.iinfo(target)
    if array.dtype.kind == "f" and (array != np.round(array)).any():
      raise BadRequest(f"input {name!r} takes integers ({dtype}); got fractions")
    if array.size and (array.min() < info.min or array.max() > info.max):
      raise BadRequest(f"input {name!r} takes {dtype} values in [{info.min}, {info.max}]; got "
                       f"[{array.min():g}, {array.max():g}]")
  return array.astype(target)


def _rows(instances: list, served: runtime.Served) -> dict:
  """Tabular rows checked (objects; known columns; numbers or null for numeric columns,
  strings or null for categorical ones) and turned into columns."""
  raw = served.meta["raw_inputs"]
  numeric, categorical = set(raw["numeric"]), set(raw["categorical"])
  for i, row in enumerate(instances):
    if not isinstance(row, dict):
      raise BadRequest(f"instance {i}: a tabular row is an object of column values, e.g. "
                       f"{{{', '.join(repr(c) + ': ...' for c in raw['numeric'][:2])}}}")
    unknown = set(row) - numeric - categorical
    if unknown:
      raise BadRequest(f"instance {i}: unknown field(s) {sorted(unknown)}; the columns are "
                       f"{sorted(numeric | categorical)}")
    for column, value in row.items():
      if value is None:
        continue
      if column in numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadRequest(f"instance {i}: {column!r} is numeric; got {value!r}")
      if column in categorical and not isinstance(value, str):
        raise BadRequest(f"instance {i}: {column!r} is categorical (a string); got {value!r}")
  return runtime.columns_of(instances, [*raw["numeric"], *raw["categorical"]])


def _texts(instances: list, feature: str) -> list[str]:
  texts = [x.get(feature) if isinstance(x, dict) and set(x) == {feature} else x
           for x in instances]
  bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
  if bad is not None:
    raise BadRequest(f"instance {bad}: text is a string (or {{{feature!r}: string}})")
  return texts


def _columnar(inputs, served: runtime.Served) -> list:
  """TF Serving's columnar ``inputs`` as instances."""
  names = list(served.input_spec)
  if isinstance(inputs, dict) and served.meta["raw_inputs"]["kind"] == "arrays":
    if set(inputs) != set(names):
      raise BadRequest(f"'inputs' names {sorted(inputs)}; the model takes {sorted(names)}")
    sizes = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
      raise BadRequest("'inputs': every input is a list with one entry per example")
    return [{k: inputs[k][i] for k in names} for i in range(sizes.pop())]
  if not isinstance(inputs, list):
    raise BadRequest("'inputs' is a list of examples (or, for named inputs, an object of lists)")
  return inputs


def parse_predict(body: bytes, served: runtime.Served, max_instances: int) -> Parsed:
  """A predict request's body, read and encoded for ``served``; BadRequest otherwise."""
  request = loads(body)
  if not isinstance(request, dict):
    raise BadRequest('the body is a JSON object: {"instances": [...]}')
  unknown = set(request) - {"instances", "inputs", "signature_name"}
  if unknown or ("instances" in request) == ("inputs" in request):
    raise BadRequest(f'the body has "instances" (or "inputs") and optionally "signature_name"; '
                     f"got fields {sorted(request)}")
  function = request.get("signature_name") or served.meta["default_function"]
  if function == "serving_default":
    function = served.meta["default_function"]
  if function not in served.functions:
    raise BadRequest(f"unknown signature_name {function!r}; this model has "
                     f"{list(served.functions)}")
  instances = request["instances"] if "instances" in request else _columnar(request["inputs"],
                                                                           served)
  if not isinstance(instances, list) or not instances:
    raise BadRequest('"instances" is a non-empty list, one entry per example')
  if len(instances) > max_instances:
    raise BadRequest(f"{len(instances)} instances; at most {max_instances} per request", 413)
  kind = served.meta["raw_inputs"]["kind"]
  columns = None
  try:
    if kind == "tabular":
      columns = _rows(instances, served)
      inputs = served.encode(columns)
    elif kind == "text":
      inputs = served.encode(_texts(instances, served.meta["text_feature"]))
    else:
      inputs = _arrays(instances, served)
  except runtime.ExportError as e:
    raise BadRequest(str(e)) from None
  return Parsed(function, inputs, columns, len(instances))


def _arrays(instances: list, served: runtime.Served) -> dict:
  names = list(served.input_spec)
  named = all(isinstance(x, dict) for x in instances)
  if len(names) > 1 and not named:
    raise BadRequest(f"each instance is an object with the inputs {names}")
  if named:
    for i, x in enumerate(instances):
      if set(x) != set(names):
        raise BadRequest(f"instance {i} has {sorted(x)}; the model takes {sorted(names)}")
  return {name: _array([x[name] for x in instances] if named else instances, name, shape, dtype)
          for name, (shape, dtype) in served.input_spec.items()}


def predictions(outputs) -> list:
  """Outputs (batch-first arrays; a dict of them for several outputs) as TF Serving's
  ``predictions``: one entry per example."""
  if isinstance(outputs, dict):
    names = list(outputs)
    return [{k: _plain(outputs[k][i]) for k in names} for i in range(len(outputs[names[0]]))]
  return [_plain(v) for v in np.asarray(outputs)]


def _plain(value):
  value = np.asarray(value).tolist()
  return None if isinstance(value, float) and not math.isfinite(value) else value
