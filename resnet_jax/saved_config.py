"""A run's config read back from its workdir: config.json as a ConfigDict, overrides on top.

`launch.py --workdir=W` without --config evaluates or resumes the run in W as it was saved, data
flags included. JSON has no tuples, and a config.json written before a field existed lacks it, so
the saved values are poured into the defaults (configs/default.py's ConfigDict, which launch.py
passes in): every field keeps the type the config file gave it, a missing one its default.

Imports no JAX: launch.py builds the config before it loads anything heavy.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from resnet_jax.errors import UserError

# A permission given to one command, not a property of the run: a resume once allowed to change
# the config must not let every later command change it unasked.
PER_COMMAND_FIELDS = ('allow_config_change',)


def _tuples(value: Any) -> Any:
  """JSON's lists as the tuples a config file holds (default.py has no list-valued field)."""
  return tuple(map(_tuples, value)) if isinstance(value, list) else value


def _pour(saved: dict, config: ml_collections.ConfigDict, path: str, prefix: str = '') -> None:
  """Sets config's fields from saved, recursively, each cast to its field's type."""
  for key in sorted(saved.keys() - config.keys()):
    logging.warning(
      '%s has a field %s%s that the config no longer has: ignored.', path, prefix, key
    )
  for key, default in config.items():
    field = prefix + key
    if field in PER_COMMAND_FIELDS:
      continue
    if key not in saved:
      logging.info(
        '%s has no %s (written before the field existed): using the default, %r.',
        path,
        field,
        default,
      )
    elif isinstance(default, ml_collections.ConfigDict):
      _pour(saved[key], default, path, f'{field}.')
    else:
      try:
        config[key] = _tuples(saved[key])
      except TypeError as e:  # ConfigDict refuses a value it cannot cast to the field's type
        raise UserError(
          f"{path}: {field}={saved[key]!r} does not fit the field ({e}). Pass the run's "
          '--config=configs/<recipe>.py instead.'
        ) from None


def from_saved(
  saved: dict, defaults: ml_collections.ConfigDict, path: str
) -> ml_collections.ConfigDict:
  """saved (the config.json at path) in the fields and types of defaults, which it fills."""
  _pour(saved, defaults, path)
  return defaults


def apply_overrides(config: ml_collections.ConfigDict, argv: list[str]) -> list[str]:
  """Applies argv's --config.field=value to config and locks it; returns the rest of argv.

  Each value is parsed by its field's type exactly as config_flags parses the overrides of
  --config=FILE, since it is config_flags that parses them: the config becomes a config_dict
  flag of its own flag set. Raises as config_flags does: AttributeError or KeyError for an
  unknown field, flags.Error for a bad value or an unknown flag.
  """
  flag_set = flags.FlagValues()
  config_flags.DEFINE_config_dict('config', config, flag_values=flag_set, sys_argv=argv)
  rest = flag_set(argv)
  for field, value in config_flags.get_override_values(flag_set['config']).items():
    logging.info('Config: %s=%r given on the command line.', field, value)
  return rest
