"""tools/sweep.py: one config over several seeds, each into its own workdir."""

import pathlib
import tempfile

import numpy as np
import pytest

from resnet_jax import records
from tools import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_sweep_trains_each_seed_into_its_own_workdir_and_resumes(cifar_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '1')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='sweep_cache_'))
  root = tmp_path / 'runs'
  argv = [
    f'--config={REPO}/configs/resnet_test.py',
    '--seeds=3,0',
    f'--workdir_root={root}',
    '--',
    f'--config.dataset.data_dir={cifar_dir}',
    '--config.num_train_steps=2',
  ]
  assert sweep.main(argv) == 0
  assert sorted(p.name for p in root.iterdir()) == ['seed0', 'seed3']
  losses = {}
  for seed in (3, 0):
    assert records.read_config(str(root / f'seed{seed}'))['seed'] == seed
    rows = records.read_metrics(str(root / f'seed{seed}'))
    assert [r['step'] for r in rows if r['split'] == 'test'] == [2]
    losses[seed] = [r['loss'] for r in rows if r['split'] == 'train']
  assert not np.array_equal(losses[3], losses[0])  # the seed reached the run

  # Run again (seed 0 only, to save time), the finished run resumes from its last checkpoint.
  assert sweep.main([argv[0], '--seeds=0', *argv[2:]]) == 0
  log = (root / 'seed0' / 'sweep.log').read_text()
  assert log.count('=== ') == 2 and 'Resumed from the checkpoint of step 2.' in log
  assert records.read_config(str(root / 'seed0'))['seed'] == 0


def test_sweep_stops_at_the_first_failing_seed(tmp_path):
  root = tmp_path / 'runs'
  argv = [
    f'--config={REPO}/configs/resnet_test.py',
    '--seeds=0,1',
    f'--workdir_root={root}',
    '--',
    '--config.no_such_field=1',
  ]
  assert sweep.main(argv) == 2
  assert 'no_such_field' in (root / 'seed0' / 'sweep.log').read_text()
  assert not (root / 'seed1').exists()
  with pytest.raises(SystemExit):
    sweep.parse_args(['--config=c.py', '--seeds=0', '--workdir_root=r', '--', '--config.seed=1'])


def test_sweep_runs_modules_in_the_repository_root_with_the_callers_paths(tmp_path, monkeypatch):
  own = ['--config=configs/paper_cifar.py:plain20', '--seeds=1', '--workdir_root=runs/x']
  monkeypatch.chdir(REPO)  # where the modules run from: paths stay as given
  args, extra = sweep.parse_args([*own, '--parity', '--', '--config.num_epochs=2'])
  assert sweep.command(args, 1, extra)[1:] == [
    '-m',
    'tools.parity',
    '--config=configs/paper_cifar.py:plain20',
    '--config.seed=1',
    '--workdir=runs/x/seed1',
    '--config.num_epochs=2',
  ]
  monkeypatch.chdir(tmp_path)  # elsewhere: read from here, handed on as absolute paths
  args, extra = sweep.parse_args(own)
  assert sweep.command(args, 1, extra)[1:] == [
    '-m',
    'launch',
    f'--config={tmp_path}/configs/paper_cifar.py:plain20',
    '--config.seed=1',
    f'--workdir={tmp_path}/runs/x/seed1',
  ]
