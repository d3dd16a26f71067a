"""Finds models and tasks by name, so adding one never edits the core.

A short name such as ``cnn`` resolves to the module ``research.models.cnn``; a dotted
name such as ``my_project.models.fancy`` is imported as given, so code outside this
package plugs in the same way.
"""
import importlib

from research import errors


def import_member(kind: str, name: str, member: str):
  """Returns ``member`` of the module that ``name`` names in ``research.<kind>``."""
  module_name = name if "." in name else f"research.{kind}.{name}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name and module_name.startswith(e.name):
      raise errors.ConfigError(f"unknown {kind[:-1]} {name!r}: no module {module_name}") from None
    raise
  try:
    return getattr(module, member)
  except AttributeError:
    raise errors.ConfigError(f"{module_name} defines no {member}") from None
