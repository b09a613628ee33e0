"""One validation layer: every config value checked before anything is loaded."""

import pytest

from configs import default, paper_cifar, resnet_test
from resnet_jax import extra_sets, models, timeline, validation
from resnet_jax.errors import UserError
from tests.launching import launch


def _refused(config, match, devices=4):
  with pytest.raises(UserError, match=match):
    validation.validate_config(config, devices)


def test_every_recipe_is_valid():
  from configs import (
    resnet18,
    resnet18_cifar100,
    resnet18_cutout,
    resnet18_fast,
    resnet20_short,
    resnet110,
  )

  for module in (
    default,
    resnet18,
    resnet18_cifar100,
    resnet18_cutout,
    resnet18_fast,
    resnet20_short,
    resnet110,
    resnet_test,
  ):
    validation.validate_config(module.get_config(), 8)
  for name in models.MODEL_NAMES:
    validation.validate_config(paper_cifar.get_config(name), 8)


def test_plain_nets_run_from_the_paper_recipe_and_refuse_a_shortcut():
  config = paper_cifar.get_config('plain56')
  validation.validate_config(config, 1)
  config.model.shortcut = 'A'
  _refused(config, r"plain56 takes '' \(it has no shortcuts\)")
  config = paper_cifar.get_config('resnet18')
  config.model.shortcut = 'A'
  _refused(config, r"resnet18 takes one of \('B',\)")


@pytest.mark.parametrize(
  'section, field, value, match',
  [
    ('model', 'name', 'resnet19', "model.name='resnet19' is not one of"),
    ('model', 'dtype', 'float16', "model.dtype='float16' is not one of"),
    ('model', 'bn_group_size', 48, 'must divide batch_size=128'),
    ('dataset', 'name', 'mnist', "dataset.name='mnist'"),
    ('dataset', 'source', 'web', "dataset.source='web'"),
    ('dataset', 'validation_size', 50_000, 'at most 49999'),
    ('schedule', 'name', 'linear', "schedule.name='linear'"),
    ('schedule', 'boundary_epochs', (10, 5), 'increasing positive epochs'),
    ('schedule', 'warmup_epochs', -1.0, 'at least 0'),
    ('optimizer', 'momentum', 1.5, 'at most 1'),
    ('eval', 'batch_size', 6, 'divisible by the number of devices'),
    (
      'eval',
      'extra_datasets',
      ('cifar10.1',),
      "'cifar10.1', which is not a test set .*'cifar10_1'",
    ),
    ('eval', 'extra_datasets', ('cifar10_corrupted/fog_6',), 'severity from 1 to 5'),
    ('eval', 'extra_data_dir', None, "extra_data_dir=None must be a folder path, or ''"),
    ('export', 'replica', 1, r'num_replicas=1, replicas 0 to 0'),
    ('export', 'overwrite', None, 'must be True or False'),
    ('export', 'ema', True, r'keeps only with config.ema.decay > 0; this config has ema.decay=0'),
    ('augment', 'cutout_size', 33, 'cutout_size=33 must be at most 32'),
    ('augment', 'cutout_size', -1, 'at least 0'),
    ('ema', 'decay', 1.0, r'ema.decay=1.0 must be below 1.*0 turns it off'),
    ('ema', 'decay', -0.5, 'at least 0'),
    ('ema', 'warmup', None, 'ema.warmup=None must be True or False'),
  ],
)
def test_a_bad_value_names_its_field(section, field, value, match):
  config = default.get_config()
  config[section][field] = value
  _refused(config, match)


def test_two_units_of_one_value_are_refused_with_what_to_zero():
  config = default.get_config()
  config.eval_every_steps = 500
  _refused(
    config,
    r'eval_every_steps=500 and config.eval_every_epochs=1.0 are both set.*'
    r'--config.eval_every_epochs=0',
  )
  config = default.get_config()
  config.schedule.update(warmup_steps=10, warmup_epochs=1.0)
  _refused(config, 'schedule.warmup_steps=10 and config.schedule.warmup_epochs=1.0 are both')
  config = default.get_config()
  config.schedule.update(boundaries=(100,), boundary_epochs=(1.0,))
  _refused(config, 'boundaries and config.schedule.boundary_epochs are both set')


def test_what_only_the_step_counts_tell_is_checked_once_resolved():
  config = default.get_config()
  config.schedule.update(name='piecewise', warmup_epochs=2.0, boundary_epochs=(1.0,))
  validation.validate_config(config, 1)
  with pytest.raises(UserError, match='within the warm-up'):
    validation.validate_timeline(timeline.resolve(config, 50_000), 50_000, 128)
  config = default.get_config()
  with pytest.raises(UserError, match='larger than the training set'):
    validation.validate_timeline(timeline.resolve(config, 100), 100, 128)


def test_other_test_sets_are_known_names_of_the_models_classes():
  config = default.get_config()
  config.eval.extra_datasets = (
    'cifar10_1',
    'cifar10_1/v6',
    'cifar10_corrupted',
    'cifar10_corrupted/frosted_glass_blur_3',
    'cifar10_corrupted/speckle_noise_5',
  )
  validation.validate_config(config, 4)
  # ml_collections refuses a string for a tuple field; a config rebuilt from JSON has a list.
  extra_sets.check(['cifar10_1'], 'cifar10')
  with pytest.raises(UserError, match=r"extra_datasets='cifar10_1' must be a tuple of names"):
    extra_sets.check('cifar10_1', 'cifar10')
  config.dataset.name = 'cifar100'
  _refused(
    config,
    r"'cifar10_1', whose labels are the classes of cifar10, but this run trains a cifar100 "
    r'model. Remove it from --config.eval.extra_datasets',
  )


def test_a_misspelt_field_is_named_with_the_fields_it_may_mean():
  # launch.py refuses it before loading JAX: a child process costs little.
  result = launch(
    '--config=configs/resnet_test.py',
    '--config.batch_size=16',
    '--config.learning_rate=0.05',
    '--config.batchsize=16',
  )
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
    'Error: unknown config field learning_rate (in --config.learning_rate=0.05). Did you mean '
    'optimizer.learning_rate?',
    'unknown config field batchsize (in --config.batchsize=16). Did you mean batch_size or '
    'eval.batch_size?',
    'Every field and its meaning is in configs/default.py.',
  ]


@pytest.mark.parametrize(
  'name, field, value, match',
  [
    ('resnet20', 'dropout_rate', 0.3, r'resnet20 does not take it, only wrn16_8, wrn28_10 do'),
    ('wrn28_10', 'dropout_rate', 1.0, 'must be below 1'),
    ('resnet56', 'scan_blocks', True, r'only preact_resnet1001, .*wrn28_10 do'),
    ('preact_resnet18', 'zero_init_residual', True, 'preact_resnet18 does not take it'),
    ('wrn16_8', 'dropout_rate', -0.1, 'must be at least 0'),
  ],
)
def test_model_options_are_refused_where_the_model_lacks_them(name, field, value, match):
  config = paper_cifar.get_config(name)
  config.model[field] = value
  _refused(config, match)
