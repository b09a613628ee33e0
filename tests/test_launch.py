"""launch.py end to end, as a user runs it: train, eval, and the errors for bad input."""

import json
import re
import shutil
import signal
import subprocess
import sys

import pytest

from configs import default, paper_cifar, resnet_test
from resnet_jax import records, saved_config
from tests import fake_cifar
from tests.launching import REPO, TIMEOUT_S, env, launch


@pytest.fixture(scope='module')
def trained(cifar_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def _rows(workdir):
  return records.read_metrics(str(workdir))


def test_train_writes_the_run_records(trained):
  workdir, result = trained
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['4', '8']
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['name'] == 'resnet_test'
  provenance = json.loads((workdir / 'provenance.json').read_text())
  assert provenance['versions']['jax'] and len(provenance['devices']) == 4
  assert [r['step'] for r in _rows(workdir) if r['split'] == 'train'] == [2, 4, 6, 8]
  assert 'img/s' in result.stderr and 'ETA' in result.stderr


def test_the_console_says_what_runs_and_keeps_library_noise_out(trained):
  _, result = trained
  lines = [line.split('] ', 1)[-1] for line in result.stderr.splitlines()]
  assert lines[:4] == [
    'resnet_test on cifar10: 8 steps (10 per epoch, 0.8 epochs), global batch 8',
    'devices: 4 x cpu',
    f'workdir: {trained[0]}',
    'Starting fresh: no checkpoint in the workdir yet.',
  ]
  # jax's backend search and orbax's per-checkpoint lines are INFO: filtered out.
  assert 'Unable to initialize backend' not in result.stderr
  assert 'orbax' not in result.stderr


def test_any_cadence_works_with_the_default_steps_per_call(cifar_dir, tmp_path):
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={tmp_path}',
    '--config.steps_per_call=4',
    '--config.num_train_steps=100',
    '--config.log_every_steps=10',
    '--config.checkpoint_every_steps=50',
    '--config.eval_every_steps=50',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert [r['step'] for r in _rows(tmp_path) if r['split'] == 'train'] == list(range(10, 101, 10))
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [50, 100]


def test_eval_reproduces_the_final_test_accuracy_with_or_without_the_config(trained, cifar_dir):
  workdir, _ = trained
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
    '--mode=eval',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  evaluated = json.loads((workdir / 'eval_8.json').read_text())
  final = [r for r in _rows(workdir) if r['split'] == 'test'][-1]
  assert final['step'] == evaluated['step'] == 8
  assert evaluated['test']['top1'] == final['top1']
  assert evaluated['test']['top5'] == final['top5']
  assert evaluated['test']['loss'] == pytest.approx(final['loss'], rel=1e-6)

  # The workdir alone: config.json's data flags find the archive (default.py's would look in
  # data/), and an override goes on top.
  alone = launch(f'--workdir={workdir}', '--mode=eval')
  assert alone.returncode == 0, alone.stderr[-3000:]
  assert json.loads((workdir / 'eval_8.json').read_text()) == evaluated
  flipped = launch(f'--workdir={workdir}', '--mode=eval', '--config.eval.flip_tta=True')
  assert flipped.returncode == 0, flipped.stderr[-3000:]
  test = json.loads((workdir / 'eval_8.json').read_text())['test']
  assert {'loss_flip_tta', 'top1_flip_tta', 'top5_flip_tta'} <= test.keys()
  assert test['top1'] == evaluated['test']['top1']


def test_the_workdir_alone_resumes_its_run_as_saved(trained, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(trained[0], workdir)
  saved = json.loads((workdir / 'config.json').read_text())
  # As written before eval.flip_tta existed, by a resume that was allowed to change the config.
  old = {**saved, 'allow_config_change': True, 'eval': dict(saved['eval'])}
  del old['eval']['flip_tta']
  (workdir / 'config.json').write_text(json.dumps(old))
  # The permission to change the config was the old command's only: a longer cosine is refused.
  refused = launch(f'--workdir={workdir}', '--config.num_train_steps=12')
  _assert_refused(refused, 'has no eval.flip_tta', 'run length: 8 -> 12 steps', 'would jump')
  allowed = '--config.allow_config_change=True'
  result = launch(f'--workdir={workdir}', '--config.num_train_steps=12', allowed)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from the checkpoint of step 8' in result.stderr
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['12', '8']
  # The default filled in.
  assert json.loads((workdir / 'config.json').read_text()) == {
    **saved,
    'num_train_steps': 12,
    'allow_config_change': True,
  }


def test_a_saved_config_reads_back_as_its_config_file_made_it():
  for made in (paper_cifar.get_config('resnet110'), resnet_test.get_config()):
    made.profile_steps = (2, 4)
    saved = json.loads(made.to_json_best_effort())
    back = saved_config.from_saved(saved, default.get_config(), 'config.json')
    assert back == made
    assert type(back.schedule.boundaries) is type(back.profile_steps) is tuple


@pytest.mark.parametrize(
  'args, words',
  [
    ([], ['--config is required', '--workdir']),
    (['--workdir={empty}'], ['config.json', '--config=configs/']),
    (['--workdir={run}', '--config.eval.flip_ttaa=True'], ['unknown config field', 'flip_tta']),
    (['--workdir={run}', '--config.eval.flip_tta=maybe'], ['--config.eval.flip_tta=maybe']),
  ],
)
def test_the_workdir_alone_refuses_what_it_cannot_take(trained, tmp_path, args, words):
  run = trained[0]
  before = sorted(str(p) for p in run.rglob('*'))
  result = launch('--mode=eval', *(a.format(empty=tmp_path, run=run) for a in args))
  _assert_refused(result, *words)
  assert sorted(str(p) for p in run.rglob('*')) == before


def test_workdir_defaults_to_runs_and_the_config_name(cifar_dir, tmp_path):
  result = launch(
    f'--config={REPO}/configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    '--config.num_train_steps=2',
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / 'runs' / 'resnet_test' / 'checkpoints' / '2').is_dir()


def _assert_refused(result, *words):
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  for word in words:
    assert word in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize(
  'override, words',
  [
    ('--config.model.name=resnet21', ['model.name', 'resnet20']),
    ('--config.dataset.name=mnist', ['dataset.name', 'cifar100']),
    ('--config.model.nmae=resnet20', ['unknown config field', 'name']),
    ('--config.batch_size=6', ['devices that train each replica (4)']),
    ('--config.eval_every_epochs=1', ['eval_every_steps=4 and', 'are both set']),
    ('--config.eval_every_steps=3', ['calls also end every () steps -> every (3,) steps']),
    ('--config.batch_size=abc', ['batch_size']),
  ],
)
def test_bad_config_is_refused_without_touching_the_run(trained, cifar_dir, override, words):
  workdir, _ = trained
  before = sorted(str(p) for p in workdir.rglob('*'))
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
    '--config.num_train_steps=12',
    override,
  )
  _assert_refused(result, *words)
  assert sorted(str(p) for p in workdir.rglob('*')) == before


def test_missing_data_is_refused(tmp_path):
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={tmp_path}',
    f'--workdir={tmp_path / "run"}',
  )
  _assert_refused(result, 'cifar-10-binary.tar.gz', '--config.dataset.data_dir')
  assert not (tmp_path / 'run').exists()


def test_malformed_archive_is_refused(tmp_path):
  (tmp_path / 'data').mkdir()
  fake_cifar.write_cifar10(tmp_path / 'data')
  with open(tmp_path / 'data' / 'data_batch_3.bin', 'ab') as f:
    f.write(b'\0' * 100)  # no longer a whole number of records
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={tmp_path / "data"}',
    f'--workdir={tmp_path / "run"}',
  )
  _assert_refused(result, 'data_batch_3.bin')


def test_eval_without_a_checkpoint_is_refused(cifar_dir, tmp_path):
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={tmp_path}',
    '--mode=eval',
  )
  _assert_refused(result, 'No checkpoints', '--mode=train')
  assert list(tmp_path.iterdir()) == []


def test_tensorboard_events_hold_the_logged_scalars(trained):
  from tensorboard.backend.event_processing import event_accumulator

  workdir, _ = trained
  # One run folder per seed, so TensorBoard overlays the replicas; this run has one.
  assert [p.name for p in (workdir / 'tensorboard').iterdir()] == ['seed_0']
  events = event_accumulator.EventAccumulator(str(workdir / 'tensorboard' / 'seed_0'))
  events.Reload()
  rows = _rows(workdir)
  for split, names in (
    ('train', ('loss', 'top1', 'lr', 'images_per_second')),
    ('test', ('loss', 'top1', 'top5')),
  ):
    for name in names:
      logged = {r['step']: r[name] for r in rows if r['split'] == split and name in r}
      scalars = {e.step: e.value for e in events.Scalars(f'{split}/{name}')}
      assert logged and scalars.keys() == logged.keys(), (split, name)
      for step, value in logged.items():
        assert scalars[step] == pytest.approx(value, rel=1e-6)


def test_compilation_cache_hits_on_a_second_run_and_profile_steps_write_a_trace(
  cifar_dir, tmp_path, monkeypatch
):
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')  # cache tiny programs
  args = [
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--config.compilation_cache_dir={tmp_path / "cache"}',
    '--config.num_train_steps=4',
  ]
  first = launch(*args, f'--workdir={tmp_path / "a"}', '--config.profile_steps=(2, 4)')
  assert first.returncode == 0, first.stderr[-3000:]
  assert re.search(r'compilation cache \S+: 0 hits, [1-9]\d* misses', first.stderr)
  assert list((tmp_path / 'a' / 'profile').rglob('*.xplane.pb'))
  second = launch(*args, f'--workdir={tmp_path / "b"}')
  assert second.returncode == 0, second.stderr[-3000:]
  assert re.search(r'compilation cache \S+: [1-9]\d* hits, 0 misses', second.stderr)


@pytest.mark.parametrize('train_devices, eval_devices', [(4, 1), (1, 2)])
def test_a_checkpoint_restores_onto_another_device_count(
  cifar_dir, tmp_path, train_devices, eval_devices
):
  common = [
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={tmp_path}',
    '--config.schedule.name=piecewise',  # so that the run may be extended
  ]
  trained = launch(*common, '--config.num_train_steps=4', devices=train_devices)
  assert trained.returncode == 0, trained.stderr[-3000:]
  evaluated = launch(*common, '--mode=eval', devices=eval_devices)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  final = [r for r in _rows(tmp_path) if r['split'] == 'test'][-1]
  result = json.loads((tmp_path / 'eval_4.json').read_text())['test']
  assert round(result['top1'] * 20) == round(final['top1'] * 20)
  assert round(result['top5'] * 20) == round(final['top5'] * 20)
  assert result['loss'] == pytest.approx(final['loss'], rel=1e-6)
  # And training continues on the new device count.
  resumed = launch(*common, '--config.num_train_steps=6', devices=eval_devices)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resumed from the checkpoint of step 4' in resumed.stderr


def _start_long_run(cifar_dir, workdir) -> tuple[list[str], subprocess.Popen, list[str]]:
  """Starts a 400-step run and returns (command, process, stderr lines) once it is training."""
  command = [
    sys.executable,
    str(REPO / 'launch.py'),
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
    '--config.num_train_steps=400',
    '--config.checkpoint_every_steps=200',
    '--config.schedule.name=piecewise',  # so that the resume may shorten it
    # No fetch between these: nothing but the loop's own bound keeps the host near the devices.
    '--config.log_every_steps=200',
    '--config.eval_every_steps=200',
  ]
  child = subprocess.Popen(command, cwd=REPO, env=env(4), stderr=subprocess.PIPE, text=True)
  lines = []
  for line in child.stderr:
    lines.append(line)
    if 'First call' in line:
      break
  return command, child, lines


def test_sigterm_saves_at_the_next_chunk_and_the_same_command_resumes(cifar_dir, tmp_path):
  command, child, lines = _start_long_run(cifar_dir, tmp_path)
  try:
    child.send_signal(signal.SIGTERM)
    rest = child.communicate(timeout=TIMEOUT_S)[1]
  finally:
    child.kill()
  assert child.returncode == 75, ''.join(lines) + rest
  saved = re.search(r'Stopped by SIGTERM after saving the checkpoint of step (\d+)', rest)
  assert saved, rest[-3000:]
  step = int(saved.group(1))
  assert 0 < step < 400 and (tmp_path / 'checkpoints' / str(step)).is_dir()
  assert 'Traceback' not in rest
  # The host runs at most one chunk (resnet_test: 2 steps) ahead of the devices, so the save
  # comes at most a chunk after the step they had finished when the loop saw the signal.
  seen = re.search(r'SIGTERM received at step (\d+): saving a checkpoint at step (\d+)', rest)
  assert seen and int(seen.group(2)) == step, rest[-3000:]
  assert int(seen.group(1)) <= step <= int(seen.group(1)) + 2

  resumed = subprocess.run(
    command + ['--config.num_train_steps=' + str(step + 4)],
    cwd=REPO,
    env=env(4),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resumed from the checkpoint of step {step}' in resumed.stderr


def test_a_second_run_on_a_live_workdir_is_refused(cifar_dir, tmp_path):
  command, live, _ = _start_long_run(cifar_dir, tmp_path)
  try:
    second = launch(*command[2:])
    _assert_refused(second, 'Another run', str(live.pid))
  finally:
    live.kill()
    live.communicate(timeout=TIMEOUT_S)


def test_a_url_workdir_is_refused(cifar_dir):
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    '--workdir=gs://bucket/run',
  )
  _assert_refused(result, 'gcsfuse', 'gs://bucket/run')


@pytest.mark.parametrize(
  'flags, words',
  [
    (['--distributed=on'], ['multi-process runtime', '--coordinator_address']),
    (['--num_processes=2'], ['without --coordinator_address, --process_id']),
    (['--distributed=off', '--process_id=1'], ['--process_id given with --distributed=off']),
    (
      ['--coordinator_address=127.0.0.1:1', '--num_processes=2', '--process_id=2'],
      ['--process_id=2 must be in [0, 2)'],
    ),
  ],
)
def test_bad_multi_process_flags_are_refused(cifar_dir, tmp_path, flags, words):
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={tmp_path / "run"}',
    *flags,
  )
  _assert_refused(result, *words)
  assert not (tmp_path / 'run').exists()
