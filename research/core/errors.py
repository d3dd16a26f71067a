"""Errors that are the user's to fix: the launcher prints them as one line, no traceback."""


class UserError(Exception):
  """A problem with the config, the data or the environment, stated as its fix."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work."""
