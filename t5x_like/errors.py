"""The errors a user can fix. The CLI prints any `UserError` as one line (exit code 2);
every other exception is a bug and keeps its traceback."""


class UserError(Exception):
  """A problem with the user's config, data, checkpoints or environment; the message
  names the thing and the fix."""


class ConfigError(UserError, ValueError):
  """A config file, override or value that cannot work."""


class DataError(UserError, ValueError):
  """Input files, records or a tokenizer that cannot be read as configured."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that cannot be written or used."""


class NonFiniteError(UserError, RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""
