"""Every config value, checked once, before anything is built; each error names its field.

validate_config checks each section against the registries of the modules that use it (models,
datasets, sources, schedules, other test sets), so no list of allowed values is kept twice, and
the model, data and optimiser code trusts what passed. validate_timeline checks what only the
resolved step counts can tell (a warm-up longer than the run, a batch larger than the training
set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet_jax import cifar, data, extra_sets, models, optim, parallel
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  import ml_collections

  from resnet_jax.timeline import Timeline

CADENCES = ('log', 'eval', 'checkpoint')


def _choice(value: Any, field: str, allowed: tuple) -> None:
  if value not in allowed:
    raise UserError(f'config.{field}={value!r} is not one of {allowed}.')


def _is_int(value: Any) -> bool:
  # bool is an int in Python; a True batch size is a mistake, not a 1.
  return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, field: str, *, integer: bool = True, minimum=None, maximum=None) -> None:
  if not (_is_int(value) or (not integer and isinstance(value, float))):
    raise UserError(f'config.{field}={value!r} must be {"an integer" if integer else "a number"}.')
  if minimum is not None and value < minimum:
    raise UserError(f'config.{field}={value!r} must be at least {minimum}.')
  if maximum is not None and value > maximum:
    raise UserError(f'config.{field}={value!r} must be at most {maximum}.')


def _flag(value: Any, field: str) -> None:
  if not isinstance(value, bool):
    raise UserError(f'config.{field}={value!r} must be True or False.')


def _increasing(values: Any, field: str, *, integer: bool, example: str) -> None:
  values = list(values)
  if any(not (_is_int(v) or (not integer and isinstance(v, float))) for v in values) or (
    values != sorted(set(values)) or (values and values[0] <= 0)
  ):
    kind = 'integer steps' if integer else 'epochs'
    raise UserError(
      f'config.{field}={tuple(values)!r} must be increasing positive {kind}, e.g. "{example}".'
    )


def _one_of_two(section: Any, prefix: str, steps: str, epochs: str, *, required: bool) -> None:
  """A duration given in steps or in epochs: each 0 (unset) or positive, never both set."""
  steps_field, epochs_field = prefix + steps, prefix + epochs
  _number(section[steps], steps_field, minimum=0)
  _number(section[epochs], epochs_field, integer=False, minimum=0)
  if section[steps] and section[epochs]:
    raise UserError(
      f'config.{steps_field}={section[steps]} and config.{epochs_field}='
      f'{section[epochs]} are both set; they are two units of one value. Set one '
      f'of them to 0, e.g. --config.{epochs_field}=0.'
    )
  if required and not (section[steps] or section[epochs]):
    raise UserError(
      f'config.{steps_field} and config.{epochs_field} are both 0: set one, e.g. '
      f'--config.{epochs_field}=1.'
    )


def _model(model: Any, batch_size: int) -> None:
  _choice(model.name, 'model.name', models.MODEL_NAMES)
  _choice(model.dtype, 'model.dtype', tuple(models.DTYPES))
  allowed = models.shortcut_choices(model.name)
  if model.shortcut not in ('', *allowed):
    what = f'one of {allowed}' if allowed else "'' (it has no shortcuts)"
    raise UserError(
      f'config.model.shortcut={model.shortcut!r}: {model.name} takes {what}, or '
      "'' for its published choice."
    )
  _flag(model.zero_init_residual, 'model.zero_init_residual')
  _number(model.dropout_rate, 'model.dropout_rate', integer=False, minimum=0)
  if model.dropout_rate >= 1:
    raise UserError(
      f'config.model.dropout_rate={model.dropout_rate!r} must be below 1 (the fraction of '
      'activations dropped; Zagoruyko and Komodakis use 0.3).'
    )
  _flag(model.scan_blocks, 'model.scan_blocks')
  _flag(model.remat, 'model.remat')
  for option in models.OPTIONS:
    if model[option] and option not in models.model_options(model.name):
      takers = [name for name in models.MODEL_NAMES if option in models.model_options(name)]
      default = 0.0 if option == 'dropout_rate' else False
      raise UserError(
        f'config.model.{option}={model[option]!r}: {model.name} does not take it, only '
        f'{", ".join(takers)} do. Drop it, or --config.model.{option}={default}.'
      )
  _number(model.bn_group_size, 'model.bn_group_size', minimum=0)
  if model.bn_group_size and batch_size % model.bn_group_size:
    raise UserError(
      f'config.model.bn_group_size={model.bn_group_size} must divide batch_size='
      f'{batch_size}: BatchNorm takes its statistics over groups of that many '
      'examples (0: over the whole batch).'
    )


def _dataset(dataset: Any) -> None:
  _choice(dataset.name, 'dataset.name', cifar.DATASET_NAMES)
  _choice(dataset.source, 'dataset.source', data.SOURCES)
  if not isinstance(dataset.data_dir, str) or not dataset.data_dir:
    raise UserError(f'config.dataset.data_dir={dataset.data_dir!r} must be a folder path.')
  _number(
    dataset.validation_size,
    'dataset.validation_size',
    minimum=0,
    maximum=cifar.TRAIN_EXAMPLES[dataset.name] - 1,
  )


def _replicas(config: Any, num_devices: int) -> int:
  """Checks the replica fields; returns the devices that train each replica."""
  _number(config.num_replicas, 'num_replicas', minimum=1)
  _number(config.replica_groups, 'replica_groups', minimum=0)
  groups = config.replica_groups
  if groups and (config.num_replicas % groups or num_devices % groups):
    raise UserError(
      f'config.replica_groups={groups} must divide both num_replicas='
      f'{config.num_replicas} and the number of devices ({num_devices}); 0 picks '
      f'{parallel.replica_groups(config.num_replicas, num_devices)}.'
    )
  return num_devices // parallel.replica_groups(config.num_replicas, num_devices, groups)


def _run_length(config: Any, group_size: int) -> None:
  _number(config.batch_size, 'batch_size', minimum=1)
  if config.batch_size % group_size:
    raise UserError(
      f'config.batch_size={config.batch_size} must be divisible by the number of '
      f'devices that train each replica ({group_size}): each takes an equal share of the '
      'batch.'
    )
  _number(config.num_epochs, 'num_epochs', minimum=1)
  _number(config.num_train_steps, 'num_train_steps', minimum=-1)
  if config.num_train_steps == 0:
    raise UserError('config.num_train_steps=0: use -1 (from num_epochs) or a positive count.')
  _number(config.seed, 'seed', minimum=0)
  _number(config.label_smoothing, 'label_smoothing', integer=False, minimum=0, maximum=1)


def _optimizer(opt: Any) -> None:
  _number(opt.learning_rate, 'optimizer.learning_rate', integer=False, minimum=0)
  _number(opt.momentum, 'optimizer.momentum', integer=False, minimum=0, maximum=1)
  _flag(opt.nesterov, 'optimizer.nesterov')
  _number(opt.weight_decay, 'optimizer.weight_decay', integer=False, minimum=0)
  _flag(opt.decay_bn_and_bias, 'optimizer.decay_bn_and_bias')


def _schedule(sched: Any) -> None:
  _choice(sched.name, 'schedule.name', optim.SCHEDULES)
  _one_of_two(sched, 'schedule.', 'warmup_steps', 'warmup_epochs', required=False)
  _choice(sched.warmup_mode, 'schedule.warmup_mode', optim.WARMUP_MODES)
  _number(sched.warmup_factor, 'schedule.warmup_factor', integer=False, minimum=0)
  _number(sched.decay_factor, 'schedule.decay_factor', integer=False, minimum=0)
  _increasing(sched.boundaries, 'schedule.boundaries', integer=True, example='(32000, 48000)')
  _increasing(
    sched.boundary_epochs, 'schedule.boundary_epochs', integer=False, example='(100, 150)'
  )
  if sched.boundaries and sched.boundary_epochs:
    raise UserError(
      'config.schedule.boundaries and config.schedule.boundary_epochs are both '
      'set; they are two units of one value. Empty one, e.g. '
      '--config.schedule.boundary_epochs="()".'
    )


def _augment(aug: Any) -> None:
  _number(aug.cutout_size, 'augment.cutout_size', minimum=0, maximum=32)


def _ema(average: Any) -> None:
  _number(average.decay, 'ema.decay', integer=False, minimum=0)
  if average.decay >= 1:
    raise UserError(
      f'config.ema.decay={average.decay!r} must be below 1: at 1 the average would never move '
      'from the initial weights. 0 turns it off; 0.999 or 0.9999 are usual.'
    )
  _flag(average.warmup, 'ema.warmup')


def _cadences(config: Any) -> None:
  _number(config.steps_per_call, 'steps_per_call', minimum=1)
  for name in CADENCES:
    _one_of_two(config, '', f'{name}_every_steps', f'{name}_every_epochs', required=True)
  _number(config.keep_checkpoints, 'keep_checkpoints', minimum=1)


def _eval(ev: Any, group_size: int, dataset: str) -> None:
  _number(ev.batch_size, 'eval.batch_size', minimum=1)
  if ev.batch_size % group_size:
    raise UserError(
      f'config.eval.batch_size={ev.batch_size} must be divisible by the number of '
      f'devices that evaluate each replica ({group_size}).'
    )
  _number(ev.step, 'eval.step', minimum=-1)
  _flag(ev.flip_tta, 'eval.flip_tta')
  extra_sets.check(ev.extra_datasets, dataset)
  if not isinstance(ev.extra_data_dir, str):
    raise UserError(
      f"config.eval.extra_data_dir={ev.extra_data_dir!r} must be a folder path, or '' for "
      'config.dataset.data_dir.'
    )


def _export(ex: Any, num_replicas: int, ema_decay: float) -> None:
  _number(ex.replica, 'export.replica', minimum=0)
  if ex.replica >= num_replicas:
    raise UserError(
      f'config.export.replica={ex.replica}: the run has num_replicas={num_replicas}, replicas 0 '
      f'to {num_replicas - 1}.'
    )
  _flag(ex.overwrite, 'export.overwrite')
  _flag(ex.ema, 'export.ema')
  if ex.ema and not ema_decay:
    raise UserError(
      'config.export.ema=True exports the EMA of the weights, which a run keeps only with '
      'config.ema.decay > 0; this config has ema.decay=0. Pass the config the run was trained '
      'with, or drop export.ema.'
    )


def _runtime(config: Any) -> None:
  _flag(config.allow_config_change, 'allow_config_change')
  _number(config.shared_workdir_timeout_s, 'shared_workdir_timeout_s', integer=False, minimum=0)
  if not isinstance(config.compilation_cache_dir, str):
    raise UserError(
      f'config.compilation_cache_dir={config.compilation_cache_dir!r} must be a '
      "folder path, or '' for no cache."
    )
  window = list(config.profile_steps)
  if window and (
    len(window) != 2 or not all(map(_is_int, window)) or not 0 <= window[0] < window[1]
  ):
    raise UserError(
      f'config.profile_steps={config.profile_steps!r} must be empty or two steps '
      '(start, stop) with 0 <= start < stop, e.g. "(100, 110)".'
    )


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises UserError for the first bad value, saying what is allowed."""
  _model(config.model, config.batch_size)
  _dataset(config.dataset)
  group_size = _replicas(config, num_devices)
  _run_length(config, group_size)
  _optimizer(config.optimizer)
  _schedule(config.schedule)
  _augment(config.augment)
  _ema(config.ema)
  _cadences(config)
  _eval(config.eval, group_size, config.dataset.name)
  _export(config.export, config.num_replicas, config.ema.decay)
  _runtime(config)


def validate_timeline(timeline: Timeline, num_train_examples: int, batch_size: int) -> None:
  """What the config's values mean for this training set, once resolved to steps."""
  if timeline.epoch_steps == 0:
    raise UserError(
      f'config.batch_size={batch_size} is larger than the training set '
      f'({num_train_examples} examples): lower --config.batch_size.'
    )
  if timeline.boundaries and timeline.boundaries[0] <= timeline.warmup_steps:
    raise UserError(
      f'The schedule drops the learning rate at step {timeline.boundaries[0]}, '
      f'within the warm-up of {timeline.warmup_steps} steps: set '
      'config.schedule.boundaries (or boundary_epochs) after the warm-up.'
    )
  if timeline.warmup_steps >= timeline.total_steps:
    raise UserError(
      f'The warm-up ({timeline.warmup_steps} steps) is not shorter than the run '
      f'({timeline.total_steps} steps): shorten config.schedule.warmup_steps (or '
      'warmup_epochs) or train longer.'
    )
