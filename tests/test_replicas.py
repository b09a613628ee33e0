"""num_replicas: N seeds in one program, each as its own run would be; layouts, divergence, resume."""

import logging

import jax
import numpy as np
import pytest

from configs import resnet_test
from resnet_jax import checkpoint, parallel, records, setup, train, train_step, validation
from resnet_jax.errors import UserError
from resnet_jax.evaluate_checkpoint import evaluate_checkpoint


def _config(data_dir, **overrides):
  config = resnet_test.get_config()
  config.dataset.data_dir = str(data_dir)
  config.update(overrides)
  return config


def _steps(config, num_steps, edit=None):
  """The states (initial, then after each step, on the host) and the (steps, replicas) metrics
  of config's first num_steps, one step a call (one compilation).

  edit(run), if given, changes the set-up run (its state) before it trains.
  """
  validation.validate_config(config, jax.device_count())
  run = setup.setup(config)
  if edit is not None:
    edit(run)
  _, perm_keys, aug_keys = train_step.replica_keys(run.seeds)
  chunk = train_step.make_train_chunk(train.step_function(config, run), aug_keys, run.mesh)
  images, labels = parallel.replicate(
    (run.dataset.train.images, run.dataset.train.labels), run.mesh
  )
  orders = train_step.epoch_order(perm_keys, 0, len(labels), run.mesh)
  state, states, per_step = run.state, [jax.device_get(run.state)], []
  for _ in range(num_steps):
    state, metrics = chunk(state, images, labels, orders, 1)
    states.append(jax.device_get(state))
    per_step.append(jax.device_get(metrics))
  return states, {name: np.concatenate([m[name] for m in per_step]) for name in per_step[0]}


def _update(states, k, step=1):
  """Replica k's weights and BatchNorm statistics after `step` less before it, as one vector."""
  before, after = (train_step.replica(states[s], k) for s in (step - 1, step))
  return np.concatenate(
    [
      (np.asarray(b, np.float64) - a).ravel()
      for a, b in zip(
        jax.tree.leaves((before.params, before.batch_stats)),
        jax.tree.leaves((after.params, after.batch_stats)),
      )
    ]
  )


def _rel(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_the_three_layouts_of_four_replicas_on_four_devices_train_alike(cifar_dir):
  """4 groups (the default: one replica a device, no traffic between devices), 2 groups of 2
  devices with two replicas each, and 1 group (each replica data-parallel over all 4).

  Float32, one step: the losses, and each replica's update as one vector. The tolerance is
  rounding's, as measured: seed 3's update parts by 0.6% between the one-group layout and the
  default (on one device or four, a tiny net's BatchNorm statistics round differently, and one of
  its channels amplifies that), the others' by under 1e-6. A layout that mixed up replicas, data
  or BatchNorm groups would part by the difference between two seeds' updates: 110% and more.
  """
  assert parallel.replica_groups(4, 4) == 4
  runs = {}
  for groups in (4, 2, 1):
    config = _config(cifar_dir, seed=1, num_replicas=4, replica_groups=groups)
    assert dict(setup.run_mesh(config).shape) == {'replica': groups, 'data': 4 // groups}
    runs[groups] = _steps(config, 1)
  reference_states, reference_metrics = runs[4]
  for states, metrics in (runs[2], runs[1]):
    np.testing.assert_allclose(metrics['loss'], reference_metrics['loss'], rtol=1e-6)
    for k in range(4):
      assert _rel(_update(states, k), _update(reference_states, k)) < 2e-2, k
  updates = [_update(reference_states, k) for k in range(4)]
  assert min(_rel(updates[j], updates[k]) for j in range(4) for k in range(j)) > 0.5


def _float64(run):
  run.model = run.model.clone(dtype=np.float64)
  run.state = jax.tree.map(
    lambda x: x.astype(np.float64) if x.dtype == np.float32 else x, run.state
  )


def test_in_float64_replica_k_is_the_run_of_seed_k_to_1e9(cifar_dir):
  """Replica 1 of seeds 2 and 3 (each on its own pair of devices) and seed 3 alone (on all 4),
  3 steps. The loss stays float32 (models.ResNet casts its logits): it is compared to 1e-6.
  """
  with jax.enable_x64(True):
    states, metrics = _steps(_config(cifar_dir, seed=2, num_replicas=2), 3, _float64)
    alone_states, alone_metrics = _steps(_config(cifar_dir, seed=3), 3, _float64)
  assert metrics['loss'][0, 0] != metrics['loss'][0, 1]  # two seeds, two runs
  np.testing.assert_allclose(metrics['loss'][:, 1], alone_metrics['loss'][:, 0], rtol=1e-6)
  together, alone = train_step.replica(states[-1], 1), train_step.replica(alone_states[-1], 0)
  for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone)):
    assert a.dtype != np.float32
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_each_replica_group_holds_only_its_replicas(cifar_dir):
  config = _config(cifar_dir, num_replicas=4, replica_groups=2)
  run = setup.setup(config)
  kernel = jax.tree.leaves(run.state.params)[0]
  assert {shard.data.shape[0] for shard in kernel.addressable_shards} == {2}
  assert run.state.step.sharding.is_fully_replicated


def _poison_replica_1(run):
  """Replica 1's classifier weights at float32's largest: its first forward pass overflows."""
  params = run.state.params
  kernel = params['linear']['kernel'].at[1].set(np.finfo(np.float32).max)
  run.state = run.state.replace(params={**params, 'linear': {**params['linear'], 'kernel': kernel}})


def test_a_diverged_replica_keeps_its_last_finite_state_and_stops(cifar_dir):
  config = _config(cifar_dir, num_replicas=3)
  states, metrics = _steps(config, 2, _poison_replica_1)
  poisoned, state = states[0], states[-1]
  assert list(state.diverged_at) == [0, 1, 0]
  assert metrics['diverged_at'].tolist() == [[0, 1, 0], [0, 1, 0]]
  # Replica 1 never left its state; the step counter runs on for every replica alike.
  for a, b in zip(
    jax.tree.leaves(train_step.replica(state, 1).params),
    jax.tree.leaves(train_step.replica(poisoned, 1).params),
  ):
    np.testing.assert_array_equal(a, b)
  assert list(state.step) == [2, 2, 2]
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.opt_state))
  # The others trained on: their losses are finite and their weights moved.
  assert np.all(np.isfinite(metrics['loss'][:, [0, 2]]))
  assert not np.array_equal(
    jax.tree.leaves(train_step.replica(state, 0).params)[0],
    jax.tree.leaves(train_step.replica(poisoned, 0).params)[0],
  )


def test_a_run_with_a_diverged_replica_reports_it_and_trains_the_others(
  cifar_dir, tmp_path, monkeypatch, caplog
):
  def poisoned_setup(*args, **kwargs):
    run = setup.setup(*args, **kwargs)
    _poison_replica_1(run)
    return run

  monkeypatch.setattr(train, 'setup', poisoned_setup)
  config = _config(cifar_dir, num_replicas=3, seed=4)
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, str(tmp_path))
  assert 'Replica 1 (seed 5) diverged at step 1' in caplog.text
  rows = records.read_metrics(str(tmp_path), 'test')
  assert [(r['step'], r['replica'], r['seed']) for r in rows] == [
    (step, k, 4 + k) for step in (4, 8) for k in range(3)
  ]
  assert all(rows[i]['diverged_at'] == 1 and 'top1' not in rows[i] for i in (1, 4))
  train_rows = records.read_metrics(str(tmp_path), 'train')
  assert all(('diverged_at' in r) == (r['replica'] == 1) for r in train_rows)

  monkeypatch.undo()  # --mode=eval reads the saved states: replica 1's is its initial one
  result = evaluate_checkpoint(config, str(tmp_path))['test']
  live = [r for r in result['replicas'] if 'diverged_at' not in r]
  assert [r['seed'] for r in live] == [4, 6] and result['live_replicas'] == 2
  assert result['top1'] == pytest.approx(np.mean([r['top1'] for r in live]))
  assert result['loss_std'] == pytest.approx(np.std([r['loss'] for r in live], ddof=1))
  assert result['replicas'][1] == {'replica': 1, 'seed': 5, 'diverged_at': 1}


def test_every_replica_diverging_stops_the_run(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_replicas=2)
  config.optimizer.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match="Every replica's loss or gradients"):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_replica_run_resumes_exactly_and_onto_another_device_count(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_replicas=2, num_train_steps=12)
  config.schedule.update(name='piecewise', boundaries=(3, 9))
  whole = jax.device_get(train.train_and_evaluate(config, str(tmp_path / 'whole')))

  config.num_train_steps = 6  # stopped at a checkpoint, resumed on the same 4 devices
  train.train_and_evaluate(config, str(tmp_path / 'split'))
  config.num_train_steps = 12
  resumed = jax.device_get(train.train_and_evaluate(config, str(tmp_path / 'split')))
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  whole_rows, split_rows = (
    [(r['step'], r['replica'], r['seed'], r['loss']) for r in records.read_metrics(str(p), 'train')]
    for p in (tmp_path / 'whole', tmp_path / 'split')
  )
  assert split_rows == whole_rows and len(whole_rows) == 12

  # The 4-device run's checkpoint (2 groups of 2 devices) goes on, on one device.
  config.num_train_steps = 16
  state = train.train_and_evaluate(config, str(tmp_path / 'split'), jax.devices()[:1])
  assert list(state.step) == [16, 16]
  result = evaluate_checkpoint(config, str(tmp_path / 'split'))
  assert [r['seed'] for r in result['test']['replicas']] == [0, 1]
  assert {'loss_std', 'top1_std', 'top5_std'} <= set(result['test'])


def test_changing_num_replicas_on_resume_is_refused(cifar_dir, tmp_path):
  config = _config(cifar_dir, num_replicas=2, num_train_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  config.update(num_replicas=3, num_train_steps=8)
  with pytest.raises(UserError, match='num_replicas: 2 -> 3'):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.create_manager(str(tmp_path), create=False).all_steps() == [4]


@pytest.mark.parametrize(
  'overrides, message',
  [
    ({'num_replicas': 0}, 'num_replicas=0 must be at least 1'),
    ({'num_replicas': 4, 'replica_groups': 3}, 'must divide both num_replicas=4'),
    ({'num_replicas': 2, 'replica_groups': 2, 'batch_size': 3}, r'each replica \(2\)'),
  ],
)
def test_bad_replica_fields_are_refused(overrides, message):
  with pytest.raises(UserError, match=message):
    validation.validate_config(_config('data', **overrides), 4)
