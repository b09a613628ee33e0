"""tools/parity.py and tools/torch_run.py: JAX against PyTorch on identical inputs."""

import contextlib
import functools
import os

import jax
import numpy as np
import pytest

from configs import resnet_test
from resnet_jax import parallel, records, setup, train, train_step, validation

try:
  import torch

  from reference import torch_models
  from tools import parity as parity_tool
  from tools import torch_run
except ImportError:  # PyTorch is optional: not in requirements.txt
  torch = None
needs_torch = pytest.mark.skipif(torch is None, reason='PyTorch is not installed')

_STEPS = 3


def _config(data_dir, model='resnet20', learning_rate=0.003):
  """3 steps of a batch of 8, logged every step; the torch reference has no tiny net.

  Every option the PyTorch side must mirror is on: nesterov, weight decay with BatchNorm and
  biases exempt (two parameter groups), label smoothing. lr 0.003: large steps are where float32
  rounding grows fastest. On images coloured by class (cifar_dir's, so each step learns), lr 0.01
  parted the two float32 runs' third losses by 2e-3 (a 40-image set; each run 1e-3 off the
  float64 one), and lr 0.1 sent the loss from 2.4 to 5.9 in one step.
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


@contextlib.contextmanager
def _one_torch_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # the CPU is shared; batch 8 needs no more
  try:
    yield
  finally:
    torch.set_num_threads(threads)


def _setup(config):
  """What training builds from config, validated as train_and_evaluate does."""
  validation.validate_config(config, jax.device_count())
  return setup.setup(config)


@pytest.fixture(scope='module')
def parity(cifar_dir, tmp_path_factory):
  """The parity run of ResNet-20, and the batches its PyTorch side was handed."""
  handed = []
  torch_step = torch_models.train_step

  def recording_step(model, optimizer, images, labels, *args):
    handed.append(
      (
        images.permute(0, 2, 3, 1).numpy().copy(),
        labels.numpy().copy(),
        images.is_contiguous(memory_format=torch.channels_last),
      )
    )
    return torch_step(model, optimizer, images, labels, *args)

  workdir = tmp_path_factory.mktemp('parity')
  torch_models.train_step = recording_step
  try:
    with _one_torch_thread():
      result = parity_tool.run_parity(_config(cifar_dir), str(workdir))
  finally:
    torch_models.train_step = torch_step
  return result, handed, workdir


def _losses(rows):
  return np.array([r['loss'] for r in rows if r['split'] == 'train'])


def _in_torch_layout(state) -> dict[str, np.ndarray]:
  model = torch_models.resnet20()
  torch_models.load_flax_variables(
    model, {'params': state.params, 'batch_stats': state.batch_stats}
  )
  return {
    k: v.numpy() for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')
  }


def _rel(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@needs_torch
def test_float32_runs_agree_after_a_few_steps(parity):
  result, _, _ = parity
  jax_losses, torch_losses = _losses(result.rows['jax']), _losses(result.rows['torch'])
  assert len(jax_losses) == len(torch_losses) == _STEPS
  # Same weights, batch and loss: the first loss differs by float rounding only (0 to 7e-7).
  assert abs(jax_losses[0] - torch_losses[0]) / torch_losses[0] < 1e-5
  # Later steps drift apart by float32 rounding (3e-5 measured at step 3): in float32 the
  # gradients of the early layers of ResNet-20 at batch 8 are off by about 1% from float64 in
  # either framework; test_float64_steps_agree shows the computations themselves are the same.
  np.testing.assert_allclose(jax_losses, torch_losses, rtol=5e-4)

  # All weights and BatchNorm statistics as one vector: small tensors that started at 0 (the
  # BatchNorm biases) carry the rounding of their gradients in full.
  theirs = {k: v.numpy() for k, v in result.torch_model.state_dict().items()}
  ours, initial = (
    np.concatenate([d[k].ravel() for k in sorted(d)])
    for d in (
      _in_torch_layout(result.jax_state),
      _in_torch_layout(train_step.replica(_setup(result.config).state, 0)),
    )
  )
  theirs = np.concatenate(
    [theirs[k].ravel() for k in sorted(theirs) if not k.endswith('num_batches_tracked')]
  )
  assert _rel(ours, theirs) < 1e-3  # 4e-4 measured
  # Training moved them far more (0.2 measured), so the agreement above is not vacuous.
  assert _rel(initial, theirs) > 100 * _rel(ours, theirs)

  jax_test, torch_test = (
    [r for r in result.rows[name] if r['split'] == 'test'] for name in ('jax', 'torch')
  )
  assert [r['step'] for r in jax_test] == [r['step'] for r in torch_test] == [_STEPS]
  assert jax_test[0]['loss'] == pytest.approx(torch_test[0]['loss'], rel=1e-3)
  assert jax_test[0]['count'] == torch_test[0]['count'] == 20


@needs_torch
def test_float64_steps_agree(cifar_dir):
  """tools/parity.py's PyTorch pieces against train_step.update_on_batch, both in float64.

  Without float32 rounding the two frameworks' losses agree to 1e-6 and every weight after 3
  steps to 1e-5 (1e-7 both, measured): the same forward pass, loss with label smoothing,
  gradients and SGD update. Only our logits are float32 (models.ResNet casts them, and the loss
  is float32 whatever the model's dtype), so lr 0.03: at 0.1 the loss jumped from 2.4 to 5.9 on
  a 40-image set, and the BatchNorm biases of the first stage, sums of many gradients that
  nearly cancel, carried that rounding up to 1e-4.
  """
  config = _config(cifar_dir, learning_rate=0.03)
  run = _setup(config)
  batches = [torch_run.make_batches(config, run)(step) for step in range(_STEPS)]
  model = torch_models.resnet20()
  initial = train_step.replica(run.state, 0)
  torch_models.load_flax_variables(
    model, {'params': initial.params, 'batch_stats': initial.batch_stats}
  )
  model = model.double().to(memory_format=torch.channels_last)
  optimizer = torch_run.torch_optimizer(model, config)
  with jax.enable_x64(True):
    state = jax.tree.map(
      lambda x: np.asarray(x, np.float64) if x.dtype == np.float32 else x, jax.device_get(initial)
    )
    update = jax.jit(
      functools.partial(
        train_step.update_on_batch,
        model=run.model.clone(dtype=np.float64),
        tx=run.tx,
        label_smoothing=config.label_smoothing,
      )
    )
    for step, (images, labels) in enumerate(batches):
      images = images.astype(np.float64)
      state, loss, _, _ = update(state, images, labels)
      for group in optimizer.param_groups:
        group['lr'] = float(run.schedule(step))
      torch_images, torch_labels = torch_run.to_torch(
        *jax.device_put((images, labels), torch_run.shared_device())
      )
      torch_loss, _ = torch_models.train_step(
        model, optimizer, torch_images, torch_labels, None, config.label_smoothing
      )
      # Our loss is computed in float32 whatever the model's dtype.
      assert float(loss) == pytest.approx(torch_loss.item(), rel=1e-6), step
  ours, initial = _in_torch_layout(state), _in_torch_layout(initial)
  for key, value in model.state_dict().items():
    if key.endswith('num_batches_tracked'):
      continue
    # flax keeps the biased running variance, PyTorch the unbiased: n/(n-1), n >= 8 * 8 * 8.
    tolerance = 2e-3 if key.endswith('running_var') else 1e-5
    assert _rel(ours[key], value.numpy()) < tolerance, key
    if not key.endswith(('running_mean', 'running_var')):
      # Every weight moved, ten times as far as the tolerance at least (9e-4 the least).
      assert _rel(initial[key], value.numpy()) > 1e-4, key


@needs_torch
def test_torch_is_handed_exactly_our_data_paths_batches(parity, cifar_dir):
  _, handed, _ = parity
  assert len(handed) == _STEPS and all(channels_last for _, _, channels_last in handed)
  # Our data path, trained step by step on the batches that make_batches gives, reproduces
  # train_step's own losses: it is the batch train_step draws, augmentation included.
  config = _config(cifar_dir, model='resnet_test')
  run = _setup(config)
  batches = torch_run.make_batches(config, run)
  expected = [batches(step) for step in range(_STEPS)]
  for (images, labels, _), (want_images, want_labels) in zip(handed, expected, strict=True):
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
  assert not np.array_equal(expected[0][1], expected[1][1])
  # Handed over through DLPack: PyTorch reads the JAX buffer itself, no copy.
  on_device = jax.device_put(expected[0], torch_run.shared_device())
  images, labels = torch_run.to_torch(*on_device)
  assert images.data_ptr() == on_device[0].unsafe_buffer_pointer()
  assert labels.dtype == torch.int64

  _, perm_key, aug_key = train_step.run_keys(config.seed)
  data_path_step = jax.jit(train.step_function(config, run))
  ready_batch_step = jax.jit(
    functools.partial(
      train_step.update_on_batch, model=run.model, tx=run.tx, label_smoothing=config.label_smoothing
    )
  )
  images, labels = parallel.replicate(
    (run.dataset.train.images, run.dataset.train.labels), run.mesh
  )
  order = train_step.epoch_order(perm_key, 0, len(run.dataset.train.labels), run.mesh)
  assert _STEPS <= run.timeline.epoch_steps  # every step below is of epoch 0
  state = train_step.replica(run.state, 0)
  for step, (batch_images, batch_labels) in enumerate(expected):
    _, loss, _, _ = ready_batch_step(state, batch_images, batch_labels)
    state, step_metrics = data_path_step(state, images, labels, order, aug_key)
    assert float(loss) == pytest.approx(float(step_metrics['loss']), rel=1e-6), step


@needs_torch
def test_batches_follow_each_epochs_order(cifar_dir):
  """Across an epoch end, make_batches switches to the next epoch's order, as training does."""
  config = _config(cifar_dir, model='resnet_test')
  run = _setup(config)
  epoch_steps = run.timeline.epoch_steps
  batches = torch_run.make_batches(config, run)
  _, perm_key, _ = train_step.run_keys(config.seed)
  num_examples = len(run.dataset.train.labels)
  for step in (epoch_steps - 1, epoch_steps, 0):  # back to epoch 0 as well
    order = jax.device_get(
      train_step.epoch_order(perm_key, step // epoch_steps, num_examples, run.mesh)
    )
    start = (step % epoch_steps) * config.batch_size
    want = run.dataset.train.labels[order[start : start + config.batch_size]]
    np.testing.assert_array_equal(batches(step)[1], want)


@needs_torch
def test_workdirs_are_run_records_that_say_their_framework(parity, cifar_examples):
  result, _, workdir = parity
  epoch_steps = len(cifar_examples.train_labels) // 8
  configs = {}
  for name, framework in (('jax', 'jax'), ('torch', 'pytorch')):
    provenance = records.read_json(str(workdir / name / records.PROVENANCE))
    assert provenance['framework'] == framework
    configs[name] = records.read_config(str(workdir / name))
    # Both runs evaluate at each epoch's end (and the run's), as their timeline.json says.
    assert records.read_timeline(str(workdir / name))['eval_every'] == result.epoch_steps
  assert result.epoch_steps == epoch_steps
  assert 'torch' in provenance['versions'] and 'jax' in provenance['versions']
  assert provenance['torch_threads'] >= 1
  assert configs['jax'] == configs['torch']
  assert configs['jax']['eval_every_epochs'] == 1.0 and configs['jax']['eval_every_steps'] == 0
  assert configs['jax']['log_every_steps'] == configs['jax']['steps_per_call'] == 1
  assert [r['step'] for r in records.read_metrics(str(workdir / 'torch'), 'train')] == [1, 2, 3]
  lines = parity_tool.report(result)
  assert lines[-1].startswith(f'Final-epoch test top-1 (step {_STEPS}): JAX ')


@needs_torch
def test_a_finished_torch_run_is_read_back_not_retrained(parity, cifar_dir):
  result, _, workdir = parity
  again = parity_tool.run_parity(_config(cifar_dir), str(workdir))
  assert again.torch_model is None
  assert again.rows == result.rows


@needs_torch
def test_a_model_pytorch_lacks_is_refused(cifar_dir):
  with pytest.raises(parity_tool.UserError, match='PyTorch has .*resnet18'):
    parity_tool.parity_config(_config(cifar_dir, model='resnet_test'))


@needs_torch
def test_dropout_is_refused(cifar_dir):
  config = _config(cifar_dir, model='wrn16_8')
  config.model.dropout_rate = 0.3
  with pytest.raises(parity_tool.UserError, match='--config.model.dropout_rate=0'):
    parity_tool.parity_config(config)


def _torch_alone_config(data_dir):
  """16 steps over two epochs of 10 steps: eval (and checkpoint) at 10 and 16, logs every 4.

  Step 10 is no log step, so the checkpoint carries train metrics not yet in a row.
  """
  config = _config(data_dir)
  config.num_train_steps = 16
  config.steps_per_call = 4
  config.checkpoint_every_steps = 16
  return config


@pytest.fixture(scope='module')
def torch_alone(cifar_dir, tmp_path_factory):
  """An uninterrupted --frameworks=torch run."""
  workdir = tmp_path_factory.mktemp('torch_alone')
  with _one_torch_thread():
    result = parity_tool.run_parity(_torch_alone_config(cifar_dir), str(workdir), ('torch',))
  return result, workdir


def _without_rates(rows):
  return [{k: v for k, v in row.items() if k != 'images_per_second'} for row in rows]


@needs_torch
def test_torch_alone_trains_no_jax_run_and_writes_its_run_workdir(torch_alone):
  result, workdir = torch_alone
  assert result.jax_state is None and list(result.rows) == ['torch']
  assert not (workdir / 'jax').exists()
  torch_dir = str(workdir / 'torch')
  assert records.read_json(f'{torch_dir}/{records.PROVENANCE}')['framework'] == 'pytorch'
  assert records.read_config(torch_dir)['log_every_steps'] == 4
  assert records.read_timeline(torch_dir)['eval_every'] == 10
  assert [r['step'] for r in records.read_metrics(torch_dir, 'train')] == [4, 8, 12, 16]
  assert [r['step'] for r in records.read_metrics(torch_dir, 'test')] == [10, 16]
  saved = torch.load(os.path.join(torch_dir, torch_run.CHECKPOINT), weights_only=True)
  assert saved['step'] == 16 and saved['unlogged'] == []
  assert sorted(os.listdir(torch_dir)) == sorted(
    [torch_run.CHECKPOINT, records.CONFIG, records.METRICS, records.PROVENANCE, records.TIMELINE]
    + ['.lock', 'tensorboard']
  )
  message = parity_tool.uncompared(result, str(workdir))
  assert f'seed {result.config.seed}:' in message and f'{workdir}/jax' in message
  with pytest.raises(parity_tool.UserError, match='launch.py'):
    parity_tool.run_parity(_torch_alone_config(torch_dir), str(workdir), ('jax',))


class _Killed(Exception):
  pass


@needs_torch
def test_an_interrupted_torch_run_resumes_as_if_never_stopped(
  torch_alone, cifar_dir, tmp_path, monkeypatch
):
  uninterrupted, _ = torch_alone
  torch_step, calls = torch_models.train_step, []  # monkeypatch puts train_step back

  def killed_at_step_13(*args):
    calls.append(None)
    if len(calls) == 13:
      raise _Killed  # as a preemption would, between two checkpoints
    return torch_step(*args)

  config = _torch_alone_config(cifar_dir)
  monkeypatch.setattr(torch_models, 'train_step', killed_at_step_13)
  with _one_torch_thread(), pytest.raises(_Killed):
    parity_tool.run_parity(config, str(tmp_path), ('torch',))
  torch_dir = str(tmp_path / 'torch')
  saved = torch.load(os.path.join(torch_dir, torch_run.CHECKPOINT), weights_only=True)
  assert saved['step'] == 10 and len(saved['unlogged']) == 2  # steps 9 and 10
  assert [r['step'] for r in records.read_metrics(torch_dir)] == [4, 8, 10, 12]

  changed = _torch_alone_config(cifar_dir)
  changed.optimizer.learning_rate = 0.01
  with pytest.raises(parity_tool.UserError, match=r'optimizer.learning_rate: 0.003 -> 0.01'):
    parity_tool.run_parity(changed, str(tmp_path), ('torch',))

  with _one_torch_thread():
    resumed = parity_tool.run_parity(config, str(tmp_path), ('torch',))
  assert len(calls) == 13 + 6  # steps 11 to 16: resumed, not started over
  # The row of step 12 is dropped and written again, from steps 9 to 12 as before.
  assert _without_rates(resumed.rows['torch']) == _without_rates(uninterrupted.rows['torch'])
  ours, theirs = resumed.torch_model.state_dict(), uninterrupted.torch_model.state_dict()
  assert ours.keys() == theirs.keys()
  for key, value in theirs.items():
    assert torch.equal(ours[key], value), key  # bit for bit, on the CPU in float32
