"""benchmarks/accuracy.py (JAX against PyTorch on identical inputs) and benchmarks/sweep.py."""
import functools
import json
import pathlib
import tempfile

import jax
import numpy as np
import pytest

from configs import resnet_test
from resnet_jax import data, parallel, train
from tests import fake_cifar

from benchmarks import sweep

try:
  import torch
  from benchmarks import accuracy, torch_reference
except ImportError:  # the sweep's tests run without PyTorch
  torch = None
needs_torch = pytest.mark.skipif(torch is None, reason='PyTorch is not installed')

REPO = pathlib.Path(__file__).resolve().parents[1]
_STEPS = 3


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('cifar10')
  fake_cifar.write_cifar10(directory, records_per_batch=8, test_records=20)
  return directory


def _config(data_dir, model='resnet20', learning_rate=0.01):
  """3 steps of a batch of 8, logged every step; the torch reference has no tiny net.

  Every option the PyTorch side must mirror is on: nesterov, weight decay with BatchNorm and
  biases exempt (two parameter groups), label smoothing. lr 0.01: at 0.1 these batches of 8
  noise images send the loss from 2.4 to 7.5 in one step, where float32 rounding grows fastest.
  """
  config = resnet_test.get_config()
  config.model.name = model
  config.dataset.data_dir = str(data_dir)
  config.num_train_steps = _STEPS
  config.steps_per_call = 1
  config.checkpoint_every_steps = _STEPS
  config.optimizer.learning_rate = learning_rate
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_bn_and_bias = False
  config.optimizer.nesterov = True
  config.label_smoothing = 0.1
  return config


@pytest.fixture(scope='module')
def parity(cifar_dir, tmp_path_factory):
  """The parity run of ResNet-20, and the batches its PyTorch side was handed."""
  handed = []
  train_step = torch_reference.train_step

  def recording_step(model, optimizer, images, labels, *args):
    handed.append((images.permute(0, 2, 3, 1).numpy().copy(), labels.numpy().copy(),
                   images.is_contiguous(memory_format=torch.channels_last)))
    return train_step(model, optimizer, images, labels, *args)

  workdir = tmp_path_factory.mktemp('parity')
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # the CPU is shared; batch 8 needs no more
  torch_reference.train_step = recording_step
  try:
    result = accuracy.run_parity(_config(cifar_dir), str(workdir))
  finally:
    torch_reference.train_step = train_step
    torch.set_num_threads(threads)
  return result, handed, workdir


def _losses(rows):
  return np.array([r['loss'] for r in rows if r['split'] == 'train'])


def _in_torch_layout(state) -> dict[str, np.ndarray]:
  model = torch_reference.resnet20()
  torch_reference.load_flax_variables(model, {'params': state.params,
                                              'batch_stats': state.batch_stats})
  return {k: v.numpy() for k, v in model.state_dict().items()
          if not k.endswith('num_batches_tracked')}


def _rel(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@needs_torch
def test_float32_runs_agree_after_a_few_steps(parity):
  result, _, _ = parity
  jax_losses, torch_losses = _losses(result.rows['jax']), _losses(result.rows['torch'])
  assert len(jax_losses) == len(torch_losses) == _STEPS
  # Same weights, batch and loss: the first loss differs by float rounding only (1e-7 here).
  assert abs(jax_losses[0] - torch_losses[0]) / torch_losses[0] < 1e-5
  # Later steps drift apart by float32 rounding (8e-5 measured at step 3): in float32 the
  # gradients of the early layers of ResNet-20 at batch 8 are off by about 1% from float64 in
  # either framework; test_float64_steps_agree shows the computations themselves are the same.
  np.testing.assert_allclose(jax_losses, torch_losses, rtol=5e-4)

  # All weights and BatchNorm statistics as one vector: small tensors that started at 0 (the
  # BatchNorm biases) carry the rounding of their gradients in full.
  theirs = {k: v.numpy() for k, v in result.torch_model.state_dict().items()}
  ours, initial = (np.concatenate([d[k].ravel() for k in sorted(d)]) for d in (
      _in_torch_layout(result.jax_state), _in_torch_layout(train.setup(result.config).state)))
  theirs = np.concatenate([theirs[k].ravel() for k in sorted(theirs)
                           if not k.endswith('num_batches_tracked')])
  assert _rel(ours, theirs) < 1e-3  # 4e-4 measured
  # Training moved them far more (0.2 measured), so the agreement above is not vacuous.
  assert _rel(initial, theirs) > 100 * _rel(ours, theirs)

  jax_test, torch_test = ([r for r in result.rows[name] if r['split'] == 'test']
                          for name in ('jax', 'torch'))
  assert [r['step'] for r in jax_test] == [r['step'] for r in torch_test] == [_STEPS]
  assert jax_test[0]['loss'] == pytest.approx(torch_test[0]['loss'], rel=1e-3)
  assert jax_test[0]['count'] == torch_test[0]['count'] == 20


@needs_torch
def test_float64_steps_agree(cifar_dir):
  """accuracy.py's PyTorch pieces against train.sgd_step, both computing in float64, lr 0.1.

  Without float32 rounding the two frameworks' losses agree to 1e-6 and every weight after 3
  steps to 1e-5: the same forward pass, loss with label smoothing, gradients and SGD update.
  """
  config = _config(cifar_dir, learning_rate=0.1)
  run = train.setup(config)
  batches = [accuracy.make_batches(config, run)(step) for step in range(_STEPS)]
  model = torch_reference.resnet20()
  torch_reference.load_flax_variables(model, {'params': run.state.params,
                                              'batch_stats': run.state.batch_stats})
  model = model.double().to(memory_format=torch.channels_last)
  optimizer = accuracy.torch_optimizer(model, config)
  with jax.enable_x64(True):
    state = jax.tree.map(lambda x: np.asarray(x, np.float64) if x.dtype == np.float32 else x,
                         jax.device_get(run.state))
    sgd_step = jax.jit(functools.partial(train.sgd_step, model=run.model.clone(dtype=np.float64),
                                         tx=run.tx, label_smoothing=config.label_smoothing))
    for step, (images, labels) in enumerate(batches):
      images = images.astype(np.float64)
      state, loss, _, _ = sgd_step(state, images, labels)
      for group in optimizer.param_groups:
        group['lr'] = float(run.schedule(step))
      torch_images, torch_labels = accuracy.to_torch(images, labels)
      torch_loss, _ = torch_reference.train_step(model, optimizer, torch_images, torch_labels,
                                                 None, config.label_smoothing)
      # Our loss is computed in float32 whatever the model's dtype.
      assert float(loss) == pytest.approx(torch_loss.item(), rel=1e-6), step
  ours, initial = _in_torch_layout(state), _in_torch_layout(run.state)
  for key, value in model.state_dict().items():
    if key.endswith('num_batches_tracked'):
      continue
    # flax keeps the biased running variance, PyTorch the unbiased: n/(n-1), n >= 8 * 8 * 8.
    tolerance = 2e-3 if key.endswith('running_var') else 1e-5
    assert _rel(ours[key], value.numpy()) < tolerance, key
    if not key.endswith(('running_mean', 'running_var')):
      assert _rel(initial[key], value.numpy()) > 1e-3, key  # every weight moved


@needs_torch
def test_torch_is_handed_exactly_our_data_paths_batches(parity, cifar_dir):
  result, handed, _ = parity
  assert len(handed) == _STEPS and all(channels_last for _, _, channels_last in handed)
  # Our data path, trained step by step on the batches that make_batches gives, reproduces
  # train_step's own losses: it is the batch train_step draws, augmentation included.
  config = _config(cifar_dir, model='resnet_test')
  run = train.setup(config)
  batches = accuracy.make_batches(config, run)
  expected = [batches(step) for step in range(_STEPS)]
  for (images, labels, _), (want_images, want_labels) in zip(handed, expected):
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
  assert not np.array_equal(expected[0][1], expected[1][1])

  _, perm_key, aug_key = train.run_keys(config.seed)
  data_path_step = jax.jit(functools.partial(
      train.train_step, model=run.model, tx=run.tx, schedule=run.schedule, perm_key=perm_key,
      aug_key=aug_key, batch_size=config.batch_size, epoch_steps=run.epoch_steps,
      mean=data.CHANNEL_MEAN['cifar10'], std=data.CHANNEL_STD['cifar10'], label_smoothing=0.1,
      mesh=run.mesh))
  ready_batch_step = jax.jit(functools.partial(train.sgd_step, model=run.model, tx=run.tx,
                                               label_smoothing=0.1))
  images, labels = parallel.replicate((run.dataset.train.images, run.dataset.train.labels),
                                      run.mesh)
  state = run.state
  for step, (batch_images, batch_labels) in enumerate(expected):
    _, loss, _, _ = ready_batch_step(state, batch_images, batch_labels)
    state, step_metrics = data_path_step(state, images, labels)
    assert float(loss) == pytest.approx(float(step_metrics['loss']), rel=1e-6), step


@needs_torch
def test_workdirs_are_run_records_that_say_their_framework(parity):
  result, _, workdir = parity
  configs = {}
  for name, framework in (('jax', 'jax'), ('torch', 'pytorch')):
    provenance = json.loads((workdir / name / 'provenance.json').read_text())
    assert provenance['framework'] == framework
    configs[name] = json.loads((workdir / name / 'config.json').read_text())
  assert 'torch' in provenance['versions']
  assert configs['jax'] == configs['torch']
  assert configs['jax']['eval_every_steps'] == result.epoch_steps == 5
  lines = accuracy.report(result)
  assert lines[-1].startswith(f'Final-epoch test top-1 (step {_STEPS}): JAX ')


@needs_torch
def test_a_finished_torch_run_is_read_back_not_retrained(parity, cifar_dir):
  result, _, workdir = parity
  again = accuracy.run_parity(_config(cifar_dir), str(workdir))
  assert again.torch_model is None
  assert again.rows == result.rows


def test_sweep_trains_each_seed_into_its_own_workdir_and_resumes(cifar_dir, tmp_path,
                                                                 monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '1')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='sweep_cache_'))
  root = tmp_path / 'runs'
  argv = [f'--config={REPO}/configs/resnet_test.py', '--seeds=3,0', f'--workdir_root={root}',
          '--', f'--config.dataset.data_dir={cifar_dir}', '--config.num_train_steps=2']
  assert sweep.main(argv) == 0
  assert sorted(p.name for p in root.iterdir()) == ['seed0', 'seed3']
  losses = {}
  for seed in (3, 0):
    assert json.loads((root / f'seed{seed}' / 'config.json').read_text())['seed'] == seed
    rows = [json.loads(line) for line in (root / f'seed{seed}' / 'metrics.jsonl').open()]
    assert [r['step'] for r in rows if r['split'] == 'test'] == [2]
    losses[seed] = _losses(rows)
  assert not np.array_equal(losses[3], losses[0])  # the seed reached the run

  # Run again (seed 0 only, to save time), the finished run resumes from its last checkpoint.
  assert sweep.main([argv[0], '--seeds=0', *argv[2:]]) == 0
  log = (root / 'seed0' / 'sweep.log').read_text()
  assert log.count('=== ') == 2 and 'Resumed from the checkpoint of step 2' in log
  assert json.loads((root / 'seed0' / 'config.json').read_text())['seed'] == 0


def test_sweep_stops_at_the_first_failing_seed(tmp_path):
  root = tmp_path / 'runs'
  argv = [f'--config={REPO}/configs/resnet_test.py', '--seeds=0,1', f'--workdir_root={root}',
          '--', '--config.no_such_field=1']
  assert sweep.main(argv) == 2
  assert 'no_such_field' in (root / 'seed0' / 'sweep.log').read_text()
  assert not (root / 'seed1').exists()
  with pytest.raises(SystemExit):
    sweep.parse_args(['--config=c.py', '--seeds=0', '--workdir_root=r', '--', '--config.seed=1'])
