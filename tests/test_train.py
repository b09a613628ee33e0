"""Training: loss falls, device count does not change the numbers, resume continues exactly."""

import dataclasses
import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import resnet_test
from resnet_jax import checkpoint, cifar, models, records, setup, train, train_step, validation
from resnet_jax.errors import UserError


def _config(data_dir, **overrides):
  config = resnet_test.get_config()
  config.dataset.data_dir = str(data_dir)
  config.update(overrides)
  return config


def _rows(workdir, split):
  return records.read_metrics(str(workdir), split)


def _eighty_steps(data_dir):
  """Long enough for the tiny net to learn the coloured classes: 8 epochs, 4 log rows."""
  return _config(
    data_dir,
    num_train_steps=80,
    log_every_steps=20,
    eval_every_steps=80,
    checkpoint_every_steps=80,
    steps_per_call=4,
  )


def test_loss_falls_when_fitting_a_small_set(cifar_dir, tmp_path):
  # Images coloured by class: 80 steps (cosine to 0) must bring the train loss well down, and the
  # test loss and accuracy well past chance (ln 10 = 2.30 and 10%).
  config = _eighty_steps(cifar_dir)
  config.optimizer.weight_decay = 0.0
  train.train_and_evaluate(config, str(tmp_path))
  losses = [row['loss'] for row in _rows(tmp_path, 'train')]
  assert len(losses) == 4
  assert losses[-1] < 0.6 * losses[0], losses
  test = _rows(tmp_path, 'test')[-1]
  assert test['loss'] < 0.6 * np.log(10) and test['top1'] >= 0.3, test


def _final_params(config, workdir, devices):
  return jax.device_get(train.train_and_evaluate(config, str(workdir), devices))


def test_one_device_and_four_devices_train_the_same(cifar_dir, tmp_path):
  config = _config(cifar_dir)
  one = _final_params(config, tmp_path / 'one', jax.devices()[:1])
  four = _final_params(config, tmp_path / 'four', jax.devices())
  assert int(one.step[0]) == int(four.step[0]) == config.num_train_steps
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  losses = [[row['loss'] for row in _rows(tmp_path / name, 'train')] for name in ('one', 'four')]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.parametrize(
  'cadences',
  [
    {},  # resnet_test's: every stop a multiple of steps_per_call=2, and the 5-step epochs
    {
      'steps_per_call': 4,
      'log_every_steps': 3,
      'eval_every_steps': 7,
      'checkpoint_every_steps': 3,
      'eval_every_epochs': 0.0,
    },
  ],
  ids=['aligned', 'unaligned'],
)
def test_resume_continues_the_step_count_and_replays_exactly(cifar_dir, tmp_path, cadences):
  config = _config(cifar_dir, num_train_steps=12, **cadences)
  # A schedule that does not depend on the run length, which the stopped run shortens.
  config.schedule.update(name='piecewise', boundaries=(3, 9))
  uninterrupted = jax.device_get(train.train_and_evaluate(config, str(tmp_path / 'whole')))

  # The same run stopped at step 6 (a checkpoint), then started again for the full length.
  config.num_train_steps = 6
  train.train_and_evaluate(config, str(tmp_path / 'split'))
  manager = checkpoint.create_manager(str(tmp_path / 'split'), create=False)
  assert max(manager.all_steps()) == 6
  manager.close()
  config.num_train_steps = 12
  resumed = jax.device_get(train.train_and_evaluate(config, str(tmp_path / 'split')))

  assert int(resumed.step[0]) == 12
  for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  # The metrics of the resumed run continue, without rows from before the restart repeated.
  whole, split = (_rows(tmp_path / name, 'train') for name in ('whole', 'split'))
  assert [row['step'] for row in split] == [row['step'] for row in whole]
  assert [row['loss'] for row in split] == [row['loss'] for row in whole]


def test_cadences_need_not_be_multiples_of_steps_per_call(cifar_dir, tmp_path):
  config = _config(
    cifar_dir,
    num_train_steps=20,
    steps_per_call=4,
    log_every_steps=3,
    eval_every_steps=0,
    eval_every_epochs=0.5,
    checkpoint_every_steps=6,
    keep_checkpoints=10,
  )
  train.train_and_evaluate(config, str(tmp_path))
  assert [row['step'] for row in _rows(tmp_path, 'train')] == [3, 6, 9, 12, 15, 18, 20]
  assert [row['step'] for row in _rows(tmp_path, 'test')] == [5, 10, 15, 20]  # 10-step epochs
  manager = checkpoint.create_manager(str(tmp_path), create=False)
  assert manager.all_steps() == [6, 12, 18, 20]
  manager.close()


def test_a_resume_that_would_move_the_calls_is_refused(cifar_dir, tmp_path):
  config = _config(
    cifar_dir, num_train_steps=4, steps_per_call=4, checkpoint_every_steps=4, eval_every_steps=4
  )
  config.schedule.name = 'piecewise'  # extended, a cosine run would be refused for its length
  train.train_and_evaluate(config, str(tmp_path))
  config.update(num_train_steps=8, eval_every_steps=3)
  with pytest.raises(UserError, match=r'calls also end every \(10,\) steps -> every \(3, 10\)'):
    train.train_and_evaluate(config, str(tmp_path))
  # The log cadence does not move the calls: it may change.
  config.update(eval_every_steps=4, log_every_steps=3)
  assert int(train.train_and_evaluate(config, str(tmp_path)).step[0]) == 8


def _expected_metrics(logits, labels):
  """Loss, top-1 and top-5 of logits, computed in numpy."""
  top5 = np.argsort(-logits, axis=-1)[:, :5]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return {
    'loss': -np.mean(log_probs[np.arange(len(labels)), labels]),
    'top1': np.mean(logits.argmax(-1) == labels),
    'top5': np.mean((top5 == labels[:, None]).any(-1)),
  }


def _test_logits(run, images):
  from resnet_jax import augment

  images = augment.normalize(images, cifar.CHANNEL_MEAN['cifar10'], cifar.CHANNEL_STD['cifar10'])
  state = train_step.replica(run.state, 0)
  return np.asarray(
    run.model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images, train=False)
  )


def test_eval_counts_every_example_of_a_padded_last_batch(cifar_dir, cifar_examples):
  directory, fake = cifar_dir, cifar_examples
  config = _config(directory)
  config.eval.batch_size = 8  # 20 test images: batches of 8, 8 and 4 real + 4 padding
  run = setup.setup(config)
  result = run.eval_fn(run.state, run.eval_sets['test'])
  assert result['count'] == 20
  # Flip TTA is off by default: only the plain numbers; one replica, whose own they are.
  assert sorted(result) == ['count', 'loss', 'replicas', 'top1', 'top5']
  assert result['replicas'] == [
    {'replica': 0, 'seed': 0, **{k: result[k] for k in ('loss', 'top1', 'top5')}}
  ]

  expected = _expected_metrics(_test_logits(run, fake.test_images), fake.test_labels)
  assert result['top1'] == pytest.approx(expected['top1'])
  assert result['top5'] == pytest.approx(expected['top5'])
  assert result['loss'] == pytest.approx(expected['loss'], rel=1e-5)


def test_flip_tta_averages_the_logits_of_each_image_and_its_flip(cifar_dir, cifar_examples):
  directory, fake = cifar_dir, cifar_examples
  config = _config(directory)
  config.eval.batch_size = 8
  plain = setup.setup(config)
  config.eval.flip_tta = True
  run = setup.setup(config)
  result = run.eval_fn(run.state, run.eval_sets['test'])

  logits = _test_logits(run, fake.test_images)
  flipped = _test_logits(run, fake.test_images[:, :, ::-1])
  expected = _expected_metrics((logits + flipped) / 2, fake.test_labels)
  for name in ('loss', 'top1', 'top5'):
    assert result[f'{name}_flip_tta'] == pytest.approx(expected[name], rel=1e-5), name
  # The flip changes the logits of these noisy images, so the check above is not vacuous.
  assert result['loss_flip_tta'] != pytest.approx(result['loss'], rel=1e-4)
  # The plain numbers are those of an evaluation without flip TTA.
  without = plain.eval_fn(plain.state, plain.eval_sets['test'])
  for name in ('loss', 'top1', 'top5'):
    assert result[name] == pytest.approx(without[name], rel=1e-6), name


def test_flip_tta_numbers_reach_metrics_the_log_and_the_eval_json(cifar_dir, tmp_path, caplog):
  from resnet_jax.evaluate_checkpoint import evaluate_checkpoint

  config = _config(cifar_dir, num_train_steps=4)
  config.eval.flip_tta = True
  with caplog.at_level('INFO'):
    train.train_and_evaluate(config, str(tmp_path))
  row = _rows(tmp_path, 'test')[-1]
  assert {'loss_flip_tta', 'top1_flip_tta', 'top5_flip_tta', 'top1'} <= set(row)
  assert f'flip TTA: loss {row["loss_flip_tta"]:.4f}' in caplog.text
  evaluated = evaluate_checkpoint(config, str(tmp_path))
  saved = records.read_json(str(tmp_path / 'eval_4.json'))
  assert saved['test'] == evaluated['test']
  assert saved['test']['top1_flip_tta'] == row['top1_flip_tta']


def test_validation_split_is_evaluated_too(cifar_dir, tmp_path):
  config = _config(cifar_dir)
  config.dataset.validation_size = 16  # 64 train examples: 8-step epochs
  train.train_and_evaluate(config, str(tmp_path))
  validation = _rows(tmp_path, 'validation')
  assert [row['step'] for row in validation] == [4, 8]
  assert validation[0]['count'] == 16


def test_resuming_with_another_model_is_refused_and_keeps_the_checkpoints(cifar_dir, tmp_path):
  config = _config(cifar_dir)
  train.train_and_evaluate(config, str(tmp_path))
  before = sorted(p.name for p in (tmp_path / 'checkpoints').iterdir())
  config.model.shortcut = 'B'  # a different parameter tree
  config.num_train_steps = 12
  with pytest.raises(UserError, match=r"(?s)model.shortcut: '' -> 'B'.*allow_config_change=True"):
    train.train_and_evaluate(config, str(tmp_path))
  # Allowed, the checkpoint cannot fit the new model: refused again, and nothing is moved.
  config.allow_config_change = True
  with pytest.raises(UserError, match='Could not restore'):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == before
  assert not (tmp_path / 'corrupt_checkpoints').exists()


def test_fields_that_do_not_change_the_computation_may_change_on_resume(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_train_steps=4)
  config.schedule.update(name='piecewise', boundaries=(6,))  # its rates do not depend on the length
  train.train_and_evaluate(config, str(tmp_path))
  config.update(num_train_steps=8, log_every_steps=4, eval_every_steps=8, keep_checkpoints=3)
  assert int(train.train_and_evaluate(config, str(tmp_path)).step[0]) == 8


def test_a_cosine_run_may_not_change_its_length_on_resume_and_a_piecewise_one_may(tmp_path):
  from resnet_jax import guards, timeline

  def check(config, total_before):
    saved = json.loads(config.to_json_best_effort())
    records.write_timeline(str(tmp_path), dataclasses.replace(resolved, total_steps=total_before))
    guards.check_config_change(saved, config, records.read_timeline(str(tmp_path)), resolved)

  config = resnet_test.get_config()
  config.num_train_steps = 8
  resolved = timeline.resolve(config, 80)
  # The 4-step cosine ended at rate 0; an 8-step one is at half the base rate 0.1 at step 4.
  with pytest.raises(
    UserError,
    match=r'(?s)run length: 4 -> 8 steps under the cosine schedule.*'
    r'at step 4 would jump from 0 to 0\.05.*allow_config_change=True',
  ):
    check(config, 4)
  config.schedule.name = 'piecewise'
  check(config, 4)


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_run_falls_back(cifar_dir, tmp_path):
  config = _config(
    cifar_dir, num_train_steps=4, checkpoint_every_steps=2, log_every_steps=2, eval_every_steps=4
  )
  config.schedule.name = 'piecewise'  # so that the run may be extended
  train.train_and_evaluate(config, str(tmp_path))
  # Truncate every data file of the newest checkpoint, as a full disk or a bad copy would.
  for path in (tmp_path / 'checkpoints' / '4').rglob('*'):
    if path.is_file() and path.stat().st_size > 100:
      path.write_bytes(path.read_bytes()[:50])
  config.num_train_steps = 6
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step[0]) == 6
  moved = list((tmp_path / 'corrupt_checkpoints').iterdir())
  assert len(moved) == 1 and moved[0].name.startswith('4-')
  steps = [row['step'] for row in _rows(tmp_path, 'train')]
  assert steps == [2, 4, 6]  # resumed at 2: the rows of the lost steps were replaced


def test_a_half_written_checkpoint_is_never_restored(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_train_steps=4)
  config.schedule.name = 'piecewise'  # so that the run may be extended
  train.train_and_evaluate(config, str(tmp_path))
  # What a process killed mid-save leaves: orbax's temporary folder, never renamed.
  (tmp_path / 'checkpoints' / '8.orbax-checkpoint-tmp-1234').mkdir()
  config.num_train_steps = 8
  assert int(train.train_and_evaluate(config, str(tmp_path)).step[0]) == 8


def test_a_non_finite_loss_stops_the_run_and_is_never_saved(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_train_steps=8)
  config.optimizer.learning_rate = 1e30
  with pytest.raises(
    FloatingPointError, match=r'NaN or infinite \(at step \d+\).*last checkpoint is of step'
  ):
    train.train_and_evaluate(config, str(tmp_path))
  manager = checkpoint.create_manager(str(tmp_path), create=False)
  for step in manager.all_steps():
    restored = checkpoint.restore(manager, step, setup.setup(config).state)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.params))
  manager.close()


def test_a_live_runs_workdir_is_refused(cifar_dir, tmp_path):
  from resnet_jax import guards

  tmp_path.mkdir(exist_ok=True)
  with guards.WorkdirLock(str(tmp_path)):
    with pytest.raises(UserError, match='Another run'):
      train.train_and_evaluate(_config(cifar_dir), str(tmp_path))


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('batch_size', 6, 'divisible by the number of devices'),
    ('eval_every_epochs', 1.0, r'eval_every_steps=4 and config.eval_every_epochs=1.0 are both'),
    ('log_every_steps', 0, 'log_every_steps and config.log_every_epochs are both 0'),
    ('checkpoint_every_steps', -3, 'at least 0'),
    ('batch_size', 96, 'larger than the training set'),
    ('profile_steps', (5,), 'two steps'),
    ('profile_steps', (6, 2), 'start < stop'),
    ('compilation_cache_dir', None, 'folder path'),
  ],
)
def test_bad_values_are_refused_before_training(cifar_dir, tmp_path, field, value, message):
  config = _config(cifar_dir, **{field: value})
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


def test_every_model_builds_from_the_default_model_settings():
  # validation, the config defaults and the registry must agree, or a valid model is refused.
  config = resnet_test.get_config()
  for name in models.MODEL_NAMES:
    config.model.name = name
    validation.validate_config(config, 4)
    assert isinstance(setup.build_model(config), nn.Module)


def test_a_shortcut_a_model_does_not_have_is_refused():
  config = resnet_test.get_config()
  config.model.update(name='resnet18', shortcut='A')
  with pytest.raises(UserError, match='shortcut'):
    validation.validate_config(config, 4)


def _params_after(config, workdir):
  return jax.device_get(train.train_and_evaluate(config, str(workdir)))


def test_a_chunk_of_k_steps_matches_k_single_steps(cifar_dir, tmp_path):
  config = _config(
    cifar_dir, steps_per_call=4, log_every_steps=4, eval_every_steps=8, checkpoint_every_steps=8
  )
  chunked = _params_after(config, tmp_path / 'k4')
  config.steps_per_call = 1
  single = _params_after(config, tmp_path / 'k1')
  bitwise = all(
    np.array_equal(a, b) for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(single))
  )
  print(f'steps_per_call 4 vs 1 bitwise equal: {bitwise}')
  for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(single)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_trains_and_evaluates_close_to_float32(cifar_dir, tmp_path):
  config = _eighty_steps(cifar_dir)
  config.model.dtype = 'bfloat16'
  state = train.train_and_evaluate(config, str(tmp_path))
  losses = [row['loss'] for row in _rows(tmp_path, 'train')]
  assert losses[-1] < 0.6 * losses[0], losses
  # Params, optimiser state and BatchNorm statistics stay float32 under bf16 compute.
  for leaf in jax.tree.leaves((state.params, state.opt_state, state.batch_stats)):
    assert leaf.dtype == np.float32 or np.issubdtype(leaf.dtype, np.integer)  # step counts

  # The same trained weights evaluated in float32 and bfloat16: the mean loss over the fixed
  # test set agrees to 2% and at most one example in 20 changes its top-1 answer.
  f32 = setup.setup(_config(cifar_dir))
  config.model.dtype = 'bfloat16'
  bf16 = setup.setup(config)
  results = [run.eval_fn(state, run.eval_sets['test']) for run in (f32, bf16)]
  assert results[1]['loss'] == pytest.approx(results[0]['loss'], rel=0.02)
  assert abs(results[1]['top1'] - results[0]['top1']) <= 1 / 20
