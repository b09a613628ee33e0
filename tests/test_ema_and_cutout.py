"""The EMA of the weights (ema.decay) and cutout (augment.cutout_size) in training: the average's
math per replica, its evaluation, checkpoint, exact resume, load_run and export; cutout's key."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

import resnet_jax
from configs import resnet_test
from resnet_jax import augment, ema, export, guards, parallel, records, train, train_step
from resnet_jax.errors import UserError
from resnet_jax.evaluate_checkpoint import evaluate_checkpoint
from tests.test_replicas import _poison_replica_1, _steps

DECAY = 0.9


def _config(data_dir, **overrides):
  config = resnet_test.get_config()
  config.dataset.data_dir = str(data_dir)
  config.update(overrides)
  return config


def test_ema_update_on_a_tiny_tree():
  average = {'params': {'w': jnp.asarray([1.0, 2.0])}, 'batch_stats': {'mean': jnp.asarray(4.0)}}
  params, stats = {'w': jnp.asarray([3.0, 0.0])}, {'mean': jnp.asarray(0.0)}
  # No warm-up: d = decay from the first step.
  plain = ema.update(average, params, stats, jnp.int32(0), decay=0.75, warmup=False)
  np.testing.assert_allclose(plain['params']['w'], [0.75 * 1 + 0.25 * 3, 0.75 * 2])
  np.testing.assert_allclose(plain['batch_stats']['mean'], 3.0)
  # Warm-up: d = min(decay, (1 + t) / (10 + t)): 0.1 after step 0, 0.5 after step 8, then decay.
  first = ema.update(average, params, stats, jnp.int32(0), decay=0.75, warmup=True)
  np.testing.assert_allclose(first['params']['w'], [0.1 * 1 + 0.9 * 3, 0.1 * 2], rtol=1e-6)
  assert float(ema.decay_at(jnp.int32(8), 0.75, True)) == pytest.approx(0.5)
  assert float(ema.decay_at(jnp.int32(10_000), 0.75, True)) == 0.75


def test_a_replicas_ema_follows_its_steps_and_a_diverged_replica_keeps_its_own(cifar_dir):
  config = _config(cifar_dir, num_replicas=2)
  config.ema.decay = DECAY
  states, metrics = _steps(config, 3, _poison_replica_1)
  assert metrics['diverged_at'][-1].tolist() == [0, 1]
  expected = train_step.replica(states[0], 0).ema
  for t in range(1, 4):
    now = train_step.replica(states[t], 0)
    d = min(DECAY, t / (9 + t))  # (1 + s) / (10 + s) after step s = t - 1
    expected = jax.tree.map(
      lambda a, x, d=d: d * a + (1 - d) * x, expected, ema.initial(now.params, now.batch_stats)
    )
    for a, b in zip(jax.tree.leaves(now.ema), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not np.array_equal(now.ema['params']['linear']['kernel'], now.params['linear']['kernel'])
  # Replica 1 diverged at its first step: its average is still its initial weights.
  for a, b in zip(
    jax.tree.leaves(train_step.replica(states[-1], 1).ema),
    jax.tree.leaves(train_step.replica(states[0], 1).ema),
  ):
    np.testing.assert_array_equal(a, b)


def _batch(aug_key, step, cutout_size, images, order, mesh):
  return train_step.global_batch(
    step,
    images,
    jnp.zeros(len(images), jnp.int32),
    order,
    aug_key=aug_key,
    batch_size=8,
    epoch_steps=5,
    mean=(100.0, 110.0, 120.0),
    std=(50.0, 50.0, 50.0),
    mesh=mesh,
    cutout_size=cutout_size,
  )[0]


def test_cutout_is_a_function_of_seed_and_step_and_leaves_crop_and_flip_their_bits():
  mesh = parallel.make_mesh()
  images = jnp.arange(40 * 32 * 32 * 3, dtype=jnp.int32).reshape(40, 32, 32, 3) % 200 + 20
  images = parallel.replicate(images.astype(jnp.uint8), mesh)
  order = jnp.arange(40)
  _, _, aug_key = train_step.run_keys(3)
  _, _, other_seed = train_step.run_keys(4)
  plain = _batch(aug_key, 7, 0, images, order, mesh)
  # Without cutout, the batch of runs made before it: crop and flip of fold_in(aug_key, step).
  index = order[(7 % 5) * 8 :][:8]
  before = augment.crop_and_flip(images[index], jax.random.fold_in(aug_key, 7))
  before = augment.normalize(before, (100.0, 110.0, 120.0), (50.0, 50.0, 50.0))
  np.testing.assert_array_equal(plain, before)
  cut = _batch(aug_key, 7, 16, images, order, mesh)
  # Cutout only zeroes pixels (about a quarter of each image): the crop and flip are the same.
  zeroed = np.asarray(cut) != np.asarray(plain)
  assert np.all(np.asarray(cut)[zeroed] == 0) and 0.1 < zeroed.mean() < 0.3
  np.testing.assert_array_equal(cut, _batch(aug_key, 7, 16, images, order, mesh))
  # Its squares come from the step key folded with 1 (the key the contract between streams fixes).
  step_key = jax.random.fold_in(aug_key, 7)
  np.testing.assert_array_equal(cut, augment.cutout(plain, jax.random.fold_in(step_key, 1), 16))
  for other in (
    _batch(aug_key, 8, 16, images, order, mesh),
    _batch(other_seed, 7, 16, images, order, mesh),
  ):
    assert not np.array_equal(np.asarray(other) == 0, np.asarray(cut) == 0)


@pytest.fixture(scope='module')
def ema_runs(cifar_dir, tmp_path_factory):
  """8 steps with an EMA and cutout, uninterrupted, and the same stopped at 4 and resumed."""
  config = _config(cifar_dir, num_train_steps=8)
  config.ema.decay = DECAY
  config.augment.cutout_size = 16
  # A schedule that does not depend on the run length, which the stopped run shortens.
  config.schedule.update(name='piecewise', boundaries=(3, 6))
  whole, split = tmp_path_factory.mktemp('whole'), tmp_path_factory.mktemp('split')
  uninterrupted = jax.device_get(train.train_and_evaluate(config, str(whole)))
  config.num_train_steps = 4
  train.train_and_evaluate(config, str(split))
  config.num_train_steps = 8
  resumed = jax.device_get(train.train_and_evaluate(config, str(split)))
  return config, whole, uninterrupted, resumed


def test_a_run_with_ema_and_cutout_resumes_bit_for_bit(ema_runs):
  _, _, uninterrupted, resumed = ema_runs
  assert uninterrupted.ema is not None and int(resumed.step[0]) == 8
  for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_every_eval_reports_the_averaged_weights_as_their_own_split(ema_runs, caplog):
  config, workdir, _, _ = ema_runs
  raw, averaged = (records.read_metrics(str(workdir), split) for split in ('test', 'test_ema'))
  assert [row['step'] for row in averaged] == [row['step'] for row in raw] == [4, 8]
  assert {'loss', 'top1', 'top5', 'count'} <= set(averaged[-1])
  assert averaged[-1]['loss'] != raw[-1]['loss']
  # --mode=eval of the last checkpoint: both, in eval_8.json and on the console.
  config = config.copy_and_resolve_references()
  config.export.ema = False
  with caplog.at_level('INFO'):
    evaluated = evaluate_checkpoint(config, str(workdir))
  assert records.read_json(str(workdir / 'eval_8.json')) == evaluated
  for split, row in (('test', raw[-1]), ('test_ema', averaged[-1])):
    assert evaluated[split]['top1'] == row['top1']
    assert evaluated[split]['loss'] == pytest.approx(row['loss'], rel=1e-5)
  assert 'eval test_ema at step 8: loss' in caplog.text


def test_load_run_and_export_give_the_averaged_weights(ema_runs, cifar_examples, monkeypatch):
  config, workdir, final, _ = ema_runs
  run = resnet_jax.load_run(str(workdir), ema=True)
  assert run.ema and not resnet_jax.load_run(str(workdir)).ema
  for a, b in zip(
    jax.tree.leaves(run.variables), jax.tree.leaves(train_step.replica(final.ema, 0))
  ):
    np.testing.assert_array_equal(a, b)
  result = run.evaluate(cifar_examples.test_images, cifar_examples.test_labels)
  logged = records.read_metrics(str(workdir), 'test_ema')[-1]
  assert result['top1'] == logged['top1']
  assert result['loss'] == pytest.approx(logged['loss'], rel=1e-5)

  # resnet_test has no PyTorch reference; which weights are written is what is tested here.
  monkeypatch.setattr(export, 'check_exportable', lambda model: None)
  config.export.ema = True
  folder = export.export_checkpoint(config, str(workdir))
  assert folder.endswith('/export/8_ema')
  with open(f'{folder}/{export.VARIABLES_FILE}', 'rb') as f:
    written = serialization.msgpack_restore(f.read())
  for a, b in zip(jax.tree.leaves(written), jax.tree.leaves(run.variables)):
    np.testing.assert_array_equal(a, b)


def test_load_run_refuses_the_ema_of_a_run_without_one(ema_runs, tmp_path):
  _, workdir, _, _ = ema_runs
  saved = records.read_config(str(workdir))
  del saved['ema']  # a config.json written before the EMA existed
  (tmp_path / records.CONFIG).write_text(json.dumps(saved))
  (tmp_path / 'checkpoints').symlink_to(workdir / 'checkpoints')
  with pytest.raises(UserError, match=r'kept no EMA of its weights .*load it with ema=False'):
    resnet_jax.load_run(str(tmp_path), ema=True)
  assert resnet_jax.load_run(str(tmp_path)).step == 8


def test_runs_saved_before_the_new_fields_resume_and_switching_the_ema_on_is_refused():
  config = resnet_test.get_config()
  saved = json.loads(config.to_json_best_effort())
  del saved['ema'], saved['augment']  # a config.json written before they existed
  guards.check_config_change(saved, config, None, None)
  config.ema.decay = DECAY
  with pytest.raises(UserError, match=r'(?s)ema.decay: 0.0 -> 0.9.*allow_config_change'):
    guards.check_config_change(saved, config, None, None)
  assert not guards.same_structure(saved, config)


def test_resuming_without_the_ema_a_run_kept_is_refused_and_moves_nothing(ema_runs):
  config, workdir, _, _ = ema_runs
  config = config.copy_and_resolve_references()
  config.ema.decay, config.export.ema, config.num_train_steps = 0.0, False, 12
  with pytest.raises(UserError, match=r'(?s)ema.decay: 0.9 -> 0.0.*allow_config_change=True'):
    train.train_and_evaluate(config, str(workdir))
  config.allow_config_change = True
  with pytest.raises(UserError, match='(?s)Could not restore.*with an EMA of the weights'):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / 'corrupt_checkpoints').exists()
