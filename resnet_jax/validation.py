"""Checks every config value before anything is loaded or compiled; each error names its field."""
from __future__ import annotations

from typing import TYPE_CHECKING

from resnet_jax import data, models
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  # Annotations only: benchmarks import this where ml_collections is not installed.
  import ml_collections

DTYPES = ('float32', 'bfloat16')
SHORTCUTS = ('', 'A', 'B')
SCHEDULES = ('cosine', 'piecewise')
WARMUP_MODES = ('linear', 'constant')


def _choice(value, field: str, allowed: tuple) -> None:
  if value not in allowed:
    raise UserError(f'config.{field}={value!r} is not one of {allowed}.')


def _number(value, field: str, *, kind=int, minimum=None, maximum=None) -> None:
  # bool is an int in Python; a True batch size is a mistake, not a 1.
  if isinstance(value, bool) or not isinstance(value, kind):
    what = 'an integer' if kind is int else 'a number'
    raise UserError(f'config.{field}={value!r} must be {what}.')
  if minimum is not None and value < minimum:
    raise UserError(f'config.{field}={value!r} must be at least {minimum}.')
  if maximum is not None and value > maximum:
    raise UserError(f'config.{field}={value!r} must be at most {maximum}.')


def _flag(value, field: str) -> None:
  if not isinstance(value, bool):
    raise UserError(f'config.{field}={value!r} must be True or False.')


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises UserError for the first bad value, saying what is allowed."""
  _choice(config.model.name, 'model.name', models.MODEL_NAMES)
  _choice(config.model.dtype, 'model.dtype', DTYPES)
  _choice(config.model.shortcut, 'model.shortcut', SHORTCUTS)
  _flag(config.model.zero_init_residual, 'model.zero_init_residual')
  _number(config.model.bn_group_size, 'model.bn_group_size', minimum=0)

  _choice(config.dataset.name, 'dataset.name', data.DATASET_NAMES)
  _choice(config.dataset.source, 'dataset.source', data.SOURCES)
  _number(config.dataset.validation_size, 'dataset.validation_size', minimum=0)

  _number(config.batch_size, 'batch_size', minimum=1)
  if config.batch_size % num_devices:
    raise UserError(f'config.batch_size={config.batch_size} must be divisible by the number of '
                    f'devices ({num_devices}): each device takes an equal share of the batch.')
  group = config.model.bn_group_size
  if group and config.batch_size % group:
    raise UserError(f'config.model.bn_group_size={group} must divide batch_size='
                    f'{config.batch_size}: BatchNorm takes its statistics over groups of that '
                    'many examples (0: over the whole batch).')
  _number(config.num_epochs, 'num_epochs', minimum=1)
  _number(config.num_train_steps, 'num_train_steps', minimum=-1)
  if config.num_train_steps == 0:
    raise UserError('config.num_train_steps=0: use -1 (from num_epochs) or a positive count.')
  _number(config.seed, 'seed', minimum=0)

  opt = config.optimizer
  _number(opt.learning_rate, 'optimizer.learning_rate', kind=(int, float), minimum=0)
  _number(opt.momentum, 'optimizer.momentum', kind=(int, float), minimum=0, maximum=1)
  _flag(opt.nesterov, 'optimizer.nesterov')
  _number(opt.weight_decay, 'optimizer.weight_decay', kind=(int, float), minimum=0)
  _flag(opt.decay_bn_and_bias, 'optimizer.decay_bn_and_bias')

  sched = config.schedule
  _choice(sched.name, 'schedule.name', SCHEDULES)
  _number(sched.warmup_steps, 'schedule.warmup_steps', minimum=0)
  _choice(sched.warmup_mode, 'schedule.warmup_mode', WARMUP_MODES)
  _number(sched.warmup_factor, 'schedule.warmup_factor', kind=(int, float), minimum=0)
  _number(sched.decay_factor, 'schedule.decay_factor', kind=(int, float), minimum=0)
  boundaries = list(sched.boundaries)
  if any(isinstance(b, bool) or not isinstance(b, int) for b in boundaries) or (
      boundaries != sorted(set(boundaries))):
    raise UserError(f'config.schedule.boundaries={sched.boundaries!r} must be increasing '
                    'integer steps, e.g. "(32000, 48000)".')
  if boundaries and boundaries[0] <= sched.warmup_steps:
    raise UserError(f'config.schedule.boundaries={sched.boundaries!r} must all come after the '
                    f'warm-up (schedule.warmup_steps={sched.warmup_steps}).')

  _number(config.label_smoothing, 'label_smoothing', kind=(int, float), minimum=0, maximum=1)

  _number(config.steps_per_call, 'steps_per_call', minimum=1)
  for field in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    _number(config[field], field, minimum=1)
    if config[field] % config.steps_per_call:
      raise UserError(f'config.{field}={config[field]} must be a multiple of '
                      f'steps_per_call={config.steps_per_call}: logs, evals and checkpoints '
                      'happen between jitted chunks of steps_per_call steps.')
  _number(config.keep_checkpoints, 'keep_checkpoints', minimum=1)

  _flag(config.allow_config_change, 'allow_config_change')
  _number(config.shared_workdir_timeout_s, 'shared_workdir_timeout_s', kind=(int, float),
          minimum=0)
  if not isinstance(config.compilation_cache_dir, str):
    raise UserError(f'config.compilation_cache_dir={config.compilation_cache_dir!r} must be a '
                    'folder path, or \'\' for no cache.')
  window = list(config.profile_steps)
  if window and (len(window) != 2 or any(isinstance(s, bool) or not isinstance(s, int)
                                         for s in window) or not 0 <= window[0] < window[1]):
    raise UserError(f'config.profile_steps={config.profile_steps!r} must be empty or two steps '
                    '(start, stop) with 0 <= start < stop, e.g. "(100, 110)".')

  _number(config.eval.batch_size, 'eval.batch_size', minimum=1)
  if config.eval.batch_size % num_devices:
    raise UserError(f'config.eval.batch_size={config.eval.batch_size} must be divisible by the '
                    f'number of devices ({num_devices}).')
  _number(config.eval.step, 'eval.step', minimum=-1)
  _flag(config.eval.flip_tta, 'eval.flip_tta')
