"""User-facing errors: one line that names the fix, a non-zero exit."""


class UserError(Exception):
  """Bad input from the user. ``run_benchmark.py`` prints it on one line and
  exits with status 2, before anything is written to the store."""


class DataError(UserError):
  """A data source is missing, truncated or malformed."""
