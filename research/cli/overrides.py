"""``--config.FIELD=VALUE`` overrides checked against the config they change, before absl
applies them: an unknown field gets a "did you mean", a value of the wrong type one line
saying what the field takes (ml_collections' own messages read ``no field "'widht'"`` or
``invalid literal for int()``, and a malformed tuple silently becomes a tuple of one string).
"""
import ast
import difflib
import importlib.util
import os

import ml_collections

from research import errors

PREFIX = "--config."
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def load(path: str, arg: str | None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file at ``path`` (``get_config()`` without an arg), as
  config_flags calls it; a file that fails to load or returns no config is a ConfigError."""
  name = os.path.splitext(os.path.basename(path))[0]
  try:
    spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except errors.UserError:
    raise
  except SyntaxError as e:
    raise errors.ConfigError(f"config file {path} has a syntax error at line {e.lineno}: "
                             f"{e.msg}") from None
  except Exception as e:  # the user's file: any error it raises is reported, not traced
    raise errors.ConfigError(f"config file {path} failed in get_config({arg or ''}): "
                             f"{type(e).__name__}: {' '.join(str(e).split())}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise errors.ConfigError(f"config file {path}: get_config() returned a "
                             f"{type(config).__name__}, not an ml_collections.ConfigDict")
  return config


def parse_argv(argv: list[str]) -> list[tuple[str, str | None]]:
  """``(field path, raw value or None for a bare boolean)`` of each override in ``argv``."""
  found = []
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    if arg.startswith(PREFIX):
      path, has_value, value = arg[len(PREFIX):].partition("=")
      if not has_value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        value, has_value = argv[i + 1], True
      found.append((path, value if has_value else None))
  return found


def config_fields(config: ml_collections.ConfigDict, prefix: str = ""):
  """``(dotted name, value)`` of each leaf field, sorted by name as ConfigDict keeps them (an
  empty group is a leaf whose value is ``{}``)."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      yield from config_fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", ({} if isinstance(value, ml_collections.ConfigDict) else value)


def suggestion(path: str, config: ml_collections.ConfigDict) -> str:
  """' Did you mean X?' from the whole config: a close spelling, or the same last name in
  another group (``learning_rate`` -> ``optimizer.learning_rate``)."""
  paths = [name for name, _ in config_fields(config)]
  last = path.rsplit(".", 1)[-1]
  close = difflib.get_close_matches(path, paths, n=3, cutoff=0.75)
  close += [p for p in paths if p.rsplit(".", 1)[-1] == last and p not in close]
  return f"; did you mean {' or '.join(close[:3])}?" if close else ""


def field(config: ml_collections.ConfigDict, path: str):
  """``(its group, its name)`` in ``config``; a ConfigError naming the path otherwise."""
  node, keys = config, path.split(".")
  for depth, key in enumerate(keys):
    here = ".".join(keys[:depth])
    if not isinstance(node, ml_collections.ConfigDict):
      raise errors.ConfigError(f"--config.{path}: {here} is a value ({node!r}), not a group "
                               f"of fields")
    if key not in node:
      group = f"{here} has" if here else "the config has"
      close = difflib.get_close_matches(key, list(node.keys()), n=3, cutoff=0.6)
      hint = (f"; did you mean {' or '.join(('.'.join([here, c]) if here else c) for c in close)}?"
              if close else suggestion(path, config))
      raise errors.ConfigError(f"--config.{path}: {group} no field {key!r}{hint} "
                               f"(--dry_run lists the fields)")
    if depth < len(keys) - 1:
      node = node[key]
  return node, keys[-1]


def element_types(value) -> set[type]:
  return {bool if isinstance(v, bool) else int if isinstance(v, int) else type(v) for v in value}


def check_value(path: str, raw: str | None, group: ml_collections.ConfigDict, key: str) -> None:
  """``raw`` can become a value of the field's type (None: a bare boolean flag)."""
  kind, current = group.get_type(key), group[key]
  if isinstance(current, ml_collections.ConfigDict):
    raise errors.ConfigError(f"--config.{path}: {path} is a group of fields "
                             f"({', '.join(current.keys())}); set one of them")
  if raw is None:
    if kind is not bool:
      raise errors.ConfigError(f"--config.{path} needs a value: --config.{path}=VALUE")
    return
  takes = None
  if kind is bool and raw.lower() not in TRUE + FALSE:
    takes = "True or False"
  elif kind is int:
    try:
      int(raw)
    except ValueError:
      takes = "an integer"
  elif kind is float:
    try:
      float(raw)
    except ValueError:
      takes = "a number"
  elif kind is tuple and current:
    try:
      parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      parsed = None
    wanted = element_types(current)
    numeric = wanted <= {int, float}
    if numeric:
      parsed = (parsed,) if isinstance(parsed, (int, float)) else parsed
      if not isinstance(parsed, (tuple, list)) or not element_types(parsed) <= {int, float}:
        takes = "a tuple of numbers"
    elif wanted <= {str} and "," in raw and not isinstance(parsed, (tuple, list)):
      # ml_collections would make ("a,b",): one string
      takes = "a tuple of strings, written as a Python tuple: \"('a', 'b')\""
  if takes:
    raise errors.ConfigError(f"--config.{path}={raw}: {path} takes {takes} "
                             f"(now {current!r}); got {raw!r}")


def check(argv: list[str], config: ml_collections.ConfigDict) -> None:
  """Every ``--config.FIELD=VALUE`` of ``argv`` names a field of ``config`` and a value of its
  type; raises errors.ConfigError with one line for the first that does not."""
  for path, raw in parse_argv(argv):
    group, key = field(config, path)
    check_value(path, raw, group, key)
