"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
  """Bad input: launch.py prints the message without a traceback and exits non-zero.

  The message must say what was wrong and what to do about it.
  """
