"""Several processes on 127.0.0.1 as on several hosts: jax.distributed, gloo CPU collectives.

Each process is a launch.py child with its own forced CPU devices, as a user starts one per host.
Every child is bounded by a timeout, so a hang fails the test instead of the CI run.
"""

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import resnet_jax
from configs import resnet_test
from resnet_jax import checkpoint, records, setup
from tests import fake_cifar
from tests.launching import REPO, TIMEOUT_S, env, launch


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Processes:
  """N launch.py processes of one job; stderr of each in a file, so none blocks on a pipe."""

  def __init__(self, num: int, devices: int, args: list[str], logs, cwds=None):
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    self.logs = [logs / f'process_{i}.log' for i in range(num)]
    self.children = []
    for i in range(num):
      with open(self.logs[i], 'w') as log:
        self.children.append(
          subprocess.Popen(
            [
              sys.executable,
              str(REPO / 'launch.py'),
              *args,
              '--distributed=on',
              f'--coordinator_address=127.0.0.1:{port}',
              f'--num_processes={num}',
              f'--process_id={i}',
            ],
            cwd=cwds[i] if cwds else REPO,
            env=env(devices),
            stdout=log,
            stderr=subprocess.STDOUT,
          )
        )

  def stderr(self, i: int) -> str:
    return self.logs[i].read_text()

  def wait_for(self, i: int, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while text not in self.stderr(i):
      assert time.monotonic() < deadline and self.children[i].poll() is None, self.stderr(i)
      time.sleep(0.2)

  def finish(self) -> list[int]:
    """Waits for every process; kills them all if any outlives the timeout."""
    try:
      return [child.wait(timeout=TIMEOUT_S) for child in self.children]
    finally:
      for child in self.children:
        child.kill()
        child.wait()


def _run(num, devices, args, logs, cwds=None) -> tuple[list[int], list[str]]:
  processes = Processes(num, devices, args, logs, cwds)
  codes = processes.finish()
  return codes, [processes.stderr(i) for i in range(num)]


def _args(cifar_dir, workdir, *extra):
  return [
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
    *extra,
  ]


@pytest.fixture(scope='module')
def runs(cifar_dir, tmp_path_factory):
  """The tiny config trained by 1 process x 4 devices, 2 x 2 and 4 x 1: {processes: workdir}."""
  single = tmp_path_factory.mktemp('one_process')
  result = launch(*_args(cifar_dir, single), devices=4)
  assert result.returncode == 0, result.stderr[-3000:]
  workdirs = {1: single}
  for num, devices in ((2, 2), (4, 1)):
    workdir = tmp_path_factory.mktemp(f'{num}_processes')
    codes, stderrs = _run(num, devices, _args(cifar_dir, workdir), tmp_path_factory.mktemp('logs'))
    assert codes == [0] * num, '\n'.join(s[-2000:] for s in stderrs)
    workdirs[num] = workdir
    (workdir / 'stderrs.json').write_text(json.dumps(stderrs))
  return workdirs


def _final_state(workdir, cifar_dir, num_replicas=1):
  config = resnet_test.get_config()
  config.dataset.data_dir = str(cifar_dir)
  config.num_replicas = num_replicas
  template = setup.setup(config).state
  manager = checkpoint.create_manager(str(workdir), create=False)
  state = checkpoint.restore(manager, config.num_train_steps, template)
  manager.close()
  return state


def _rows(workdir):
  return records.read_metrics(str(workdir))


@pytest.mark.parametrize('num', [2, 4])
def test_several_processes_train_as_one_process_with_the_same_devices(runs, cifar_dir, num):
  expected, got = _final_state(runs[1], cifar_dir), _final_state(runs[num], cifar_dir)
  assert int(got.step[0]) == 8
  for name in ('params', 'batch_stats', 'opt_state'):
    for a, b in zip(*(jax.tree.leaves(getattr(s, name)) for s in (expected, got)), strict=True):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
  expected_rows, rows = _rows(runs[1]), _rows(runs[num])
  assert [(r['step'], r['split']) for r in rows] == [(r['step'], r['split']) for r in expected_rows]
  np.testing.assert_allclose(
    [r['loss'] for r in rows], [r['loss'] for r in expected_rows], rtol=1e-5
  )


def test_two_processes_train_two_replicas_one_each(runs, cifar_dir, tmp_path):
  """Each process holds one replica (the default layout); replica 0 is the seed-0 run."""
  workdir = tmp_path / 'run'
  args = _args(cifar_dir, workdir, '--config.num_replicas=2')
  codes, stderrs = _run(2, 1, args, tmp_path / 'logs')
  assert codes == [0, 0], '\n'.join(s[-2000:] for s in stderrs)
  assert 'replicas: 2 (seeds 0..1) in 2 group(s) of 1 device(s)' in stderrs[0]
  rows = _rows(workdir)
  expected = _rows(runs[1])
  assert [(r['step'], r['split']) for r in rows if r['replica'] == 0] == [
    (r['step'], r['split']) for r in expected
  ]
  assert {r['seed'] for r in rows if r['replica'] == 1} == {1}
  np.testing.assert_allclose(
    [r['loss'] for r in rows if r['replica'] == 0], [r['loss'] for r in expected], rtol=1e-5
  )
  replicas = _final_state(workdir, cifar_dir, num_replicas=2)
  alone = _final_state(runs[1], cifar_dir)
  for a, b in zip(jax.tree.leaves(replicas.params), jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(np.asarray(a)[0], np.asarray(a)[1])


@pytest.mark.parametrize('num', [2, 4])
def test_only_process_zero_writes_logs_and_records(runs, num):
  workdir = runs[num]
  stderrs = json.loads((workdir / 'stderrs.json').read_text())
  assert 'eval test at step 8' in stderrs[0]
  for other in stderrs[1:]:
    assert 'eval test at step' not in other and 'Done' not in other
  assert len(list((workdir / 'tensorboard' / 'seed_0').iterdir())) == 1
  assert len(_rows(workdir)) == len(_rows(runs[1]))  # no row written twice
  assert not list(workdir.glob('.probe-*'))  # the shared-storage probe is cleaned up


def test_a_checkpoint_of_two_processes_evaluates_in_one(runs, cifar_dir):
  result = launch(*_args(cifar_dir, runs[2]), '--mode=eval', devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  evaluated = json.loads((runs[2] / 'eval_8.json').read_text())['test']
  final = [r for r in _rows(runs[2]) if r['split'] == 'test'][-1]
  assert evaluated['top1'] == final['top1'] and evaluated['top5'] == final['top5']
  assert evaluated['loss'] == pytest.approx(final['loss'], abs=1e-6)


def test_load_run_restores_a_checkpoint_of_four_processes_onto_one_device(runs):
  alone, spread = (resnet_jax.load_run(str(runs[num])) for num in (1, 4))
  assert spread.step == 8
  for a, b in zip(*(jax.tree.leaves(r.variables) for r in (alone, spread)), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def _assert_refused_everywhere(codes, stderrs, *words):
  for code, text in zip(codes, stderrs, strict=True):
    assert code == 2, text[-3000:]
    assert 'Traceback' not in text
    for word in words:
      assert word in text, text[-3000:]


def test_a_workdir_one_process_cannot_see_is_refused_on_every_process(cifar_dir, tmp_path):
  # The same relative --workdir from two folders: two different places, as two local disks.
  cwds = [tmp_path / 'host0', tmp_path / 'host1']
  for cwd in cwds:
    (cwd / 'configs').mkdir(parents=True)
    (cwd / 'configs' / 'resnet_test.py').write_text((REPO / 'configs/resnet_test.py').read_text())
  codes, stderrs = _run(
    2, 2, _args(cifar_dir, 'run', '--config.shared_workdir_timeout_s=1'), tmp_path, cwds
  )
  _assert_refused_everywhere(codes, stderrs, 'Process(es) 1 cannot see the workdir')
  assert not list((cwds[0] / 'run').iterdir())  # probe removed, nothing else written


def test_a_locked_workdir_is_refused_on_every_process(cifar_dir, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with open(workdir / '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.write(str(os.getpid()))
    lock.flush()
    codes, stderrs = _run(2, 2, _args(cifar_dir, workdir), tmp_path)
  _assert_refused_everywhere(codes, stderrs, 'Another run')
  assert f'process {os.getpid()}' in stderrs[0]
  assert not (workdir / 'checkpoints').exists()


def test_sigterm_to_one_process_saves_the_same_step_on_every_process(cifar_dir, tmp_path):
  args = _args(
    cifar_dir,
    tmp_path / 'run',
    '--config.schedule.name=piecewise',  # so that the resume may shorten it
    '--config.log_every_steps=200',  # no fetch but the loop's own bound on its lead
    '--config.eval_every_steps=200',
    '--config.num_train_steps=400',
    '--config.checkpoint_every_steps=200',
  )
  processes = Processes(2, 2, args, tmp_path)
  processes.wait_for(0, 'First call')
  processes.children[1].send_signal(signal.SIGTERM)  # the notice reaches process 1 alone
  codes = processes.finish()
  stderrs = [processes.stderr(i) for i in range(2)]
  assert codes == [75, 75], '\n'.join(s[-2000:] for s in stderrs)
  steps = [
    re.search(r'Stopped by a preemption notice.* checkpoint of step (\d+)', s) for s in stderrs
  ]
  assert all(steps), stderrs
  step = int(steps[0].group(1))
  assert int(steps[1].group(1)) == step and 0 < step < 400
  for text in stderrs:  # at most one chunk (2 steps) queued when the notice was agreed on
    seen = re.search(r'received at step (\d+): saving a checkpoint at step (\d+)', text)
    assert seen and int(seen.group(2)) == step, text[-3000:]
    assert int(seen.group(1)) <= step <= int(seen.group(1)) + 2
  assert (tmp_path / 'run' / 'checkpoints' / str(step)).is_dir()

  codes, stderrs = _run(
    2, 2, args[:-2] + [f'--config.num_train_steps={step + 4}'], tmp_path / 'resumed'
  )
  assert codes == [0, 0], '\n'.join(s[-2000:] for s in stderrs)
  assert f'Resumed from the checkpoint of step {step}' in stderrs[0]


def test_evaluations_back_to_back_finish_on_every_process(tmp_path):
  """Ten evaluations of 2,000 test images in 32 batches each, by 2 processes x 2 devices.

  Batches dispatched independently could run their cross-process reductions in a different order
  on each process and hang for good (issue #16): so did 3 of 3 such runs before each batch
  added to the sums of the one before (and 3 of 4 with 10,000 images in 20 batches: what counts
  is the batches in flight).
  """
  data_dir = tmp_path / 'cifar10'
  fake_cifar.write_cifar10(data_dir, records_per_batch=16, test_records=2000)
  args = _args(
    data_dir,
    tmp_path / 'run',
    '--config.num_train_steps=10',
    '--config.eval_every_steps=1',
    '--config.checkpoint_every_steps=10',
    '--config.eval.batch_size=64',
  )
  codes, stderrs = _run(2, 2, args, tmp_path / 'logs')
  assert codes == [0, 0], '\n'.join(s[-2000:] for s in stderrs)
  assert stderrs[0].count('(2000 examples)') == 10
