"""tools/results.py on fake workdirs whose numbers are known."""

import json
import pathlib
import subprocess
import sys

import pytest

from tools import figures, results, runs

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
REPO = pathlib.Path(__file__).resolve().parents[1]


def _write_run(
  workdir,
  *,
  model='resnet20',
  seed=0,
  top1s=(0.5, 0.8),
  planned_epochs=None,
  steps_per_epoch=10,
  batch_size=10,
  images_per_second=100.0,
  command=None,
  framework=None,
  replicas=None,
  diverged=None,
):
  """A workdir with one train and one test row per epoch; top1s: the test top-1 of each epoch.

  Each epoch of steps_per_epoch steps at images_per_second takes
  steps_per_epoch * batch_size * (replicas) / images_per_second seconds (1 s by default).
  Without replicas, the rows and config of a run older than replicas (no `replica`, `seed` or
  num_replicas); with them (replica k's top1s at index k), those of a program of
  len(replicas) replicas, where replica k diverged at step diverged[k] if given.
  """
  workdir.mkdir(parents=True)
  planned_epochs = planned_epochs or len((replicas or [top1s])[0])
  config = {
    'model': {'name': model},
    'dataset': {'name': 'cifar10'},
    'batch_size': batch_size,
    'num_epochs': 200,
    'num_train_steps': planned_epochs * steps_per_epoch,
    'seed': seed,
  }
  if replicas:
    config.update(num_replicas=len(replicas), replica_groups=0)
  (workdir / 'config.json').write_text(json.dumps(config))
  provenance = {
    'device_kind': 'Fake GPU',
    'devices': ['gpu:0'],
    'time': '2026-11-27T14:40:01',
    'command': command
    or [
      'launch.py',
      '--config=configs/resnet20.py',
      f'--config.seed={seed}',
      '--config.dataset.data_dir=/tmp/x',
      *([f'--config.num_replicas={len(replicas)}'] if replicas else []),
    ],
  }
  if framework:
    provenance['framework'] = framework
  (workdir / 'provenance.json').write_text(json.dumps(provenance))
  diverged = diverged or {}
  rows = []
  for epoch in range(1, len((replicas or [top1s])[0]) + 1):
    step = epoch * steps_per_epoch
    for split in ('train', 'test'):
      for k, mine in enumerate(replicas or [top1s]):
        row = {'step': step, 'split': split, 'epoch': epoch}
        if replicas:
          row.update(replica=k, seed=seed + k)
        if split == 'train':
          row.update(lr=0.1, images_per_second=images_per_second)
        else:
          row['count'] = 100
        if step >= diverged.get(k, step + 1):
          row['diverged_at'] = diverged[k]
        elif split == 'train':
          row.update(loss=2.0 / epoch, top1=mine[epoch - 1] + 0.05)
        else:
          row.update(loss=1.5 / epoch, top1=mine[epoch - 1], top5=0.99)
        rows.append(row)
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(row) + '\n' for row in rows))
  return workdir


def _table_rows(text):
  """model -> the cells of its row of the markdown table."""
  rows = {}
  for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
    if line.startswith('| ') and cells[0] != 'model':
      rows[cells[0]] = dict(
        zip(
          ['model', 'dataset', 'recipe', 'epochs', 'top1', 'seeds', 'time', 'machine', 'date'],
          cells,
        )
      )
  return rows


def _main(capsys, *args):
  results.main([*map(str, args)])
  return capsys.readouterr().out


def test_seeds_make_one_row_of_the_final_epoch_mean_and_std(tmp_path, capsys):
  # The best epoch (0.9) is never the one reported: the last is.
  for seed, final in enumerate((0.80, 0.82, 0.84)):
    _write_run(tmp_path / f'r20_s{seed}', seed=seed, top1s=(0.5, 0.9, final))
  _write_run(
    tmp_path / 'r56', model='resnet56', top1s=(0.3, 0.7), steps_per_epoch=5, images_per_second=25.0
  )
  rows = _table_rows(
    _main(capsys, f'{tmp_path}/*', '--no_curves', '--dataset_label=CIFAR-10 (JPEG copy)')
  )
  assert sorted(rows) == ['ResNet-20', 'ResNet-56']
  r20 = rows['ResNet-20']
  assert r20['top1'] == '82.00 ± 2.00%'  # sample standard deviation of 80, 82, 84
  assert r20['seeds'] == '3'
  assert r20['epochs'] == '3'
  assert r20['time'] == '3 s'  # 3 epochs of 10 steps x 10 images at 100 images/s
  assert r20['dataset'] == 'CIFAR-10 (JPEG copy)'
  assert r20['machine'] == 'Fake GPU' and r20['date'] == '2026-11-27'
  assert r20['recipe'] == '`configs/resnet20.py`'  # the seed and data path are not the recipe
  r56 = rows['ResNet-56']
  assert (r56['top1'], r56['seeds'], r56['time']) == ('70.00%', '1', '4 s')


def test_recipe_keeps_the_overrides_that_change_the_run(tmp_path, capsys):
  command = [
    'launch.py',
    '--config=configs/resnet20.py',
    '--config.schedule.name=cosine',
    '--config.model.name=plain20',
    '--config.dataset.data_dir=/tmp/c10',
    '--config.log_every_steps=390',
    '--config.eval_every_epochs=2',
    '--config.checkpoint_every_steps=1000',
    '--config.log_every_epochs=0',
  ]
  _write_run(tmp_path / 'p20', model='plain20', command=command)
  row = _table_rows(_main(capsys, tmp_path / 'p20', '--no_curves'))['plain-20']
  assert row['recipe'] == '`configs/resnet20.py`, `schedule.name=cosine`'
  assert row['dataset'] == 'CIFAR-10'


def test_a_run_stopped_early_is_marked_not_hidden(tmp_path, capsys):
  _write_run(tmp_path / 'p56', model='plain56', top1s=(0.2, 0.3, 0.45), planned_epochs=5)
  for seed, epochs in enumerate((5, 3)):
    _write_run(
      tmp_path / f'p20_s{seed}', model='plain20', seed=seed, top1s=(0.5,) * epochs, planned_epochs=5
    )
  rows = _table_rows(_main(capsys, *sorted(tmp_path.iterdir()), '--no_curves'))
  assert rows['plain-56']['epochs'] == '**3 of 5 (stopped early)**'
  assert rows['plain-56']['top1'] == '45.00%'  # its last evaluation, at epoch 3
  assert rows['plain-20']['epochs'] == '5 **(stopped early: seed 1 at 3)**'
  assert rows['plain-20']['seeds'] == '2'


# Replica 2 diverged at step 15, in epoch 2: it has no final top-1 and its last rows no values.
REPLICA_TOP1S = [(0.5, 0.80), (0.5, 0.82), (0.4, 0.6)]


def test_a_replica_workdir_is_a_run_of_each_seed(tmp_path):
  workdir = _write_run(
    tmp_path / 'r20x3', seed=7, replicas=REPLICA_TOP1S, diverged={2: 15}, images_per_second=150.0
  )
  loaded = runs.find_runs([str(workdir)])
  assert [run.config['seed'] for run in loaded] == [7, 8, 9]
  assert [run.replica for run in loaded] == [0, 1, 2]
  assert {run.workdir for run in loaded} == {str(workdir)}
  assert all({row['replica'] for row in run.rows} == {run.replica} for run in loaded)
  assert [run.final_top1 for run in loaded] == [0.80, 0.82, None]
  assert [run.diverged_at for run in loaded] == [None, None, 15]
  assert not loaded[2].stopped_early  # its program trained the others to the end
  # 2 epochs of 10 steps x 10 images x 3 replicas at 150 images/s together: the program's time.
  assert [run.train_seconds for run in loaded] == [4.0, 4.0, 4.0]


def test_replicas_and_separate_seeds_of_one_recipe_make_one_row(tmp_path, capsys):
  _write_run(
    tmp_path / 'x3', seed=0, replicas=REPLICA_TOP1S, diverged={2: 15}, images_per_second=150.0
  )
  _write_run(tmp_path / 's3', seed=3, replicas=[(0.5, 0.84)])  # a program of one replica
  _write_run(tmp_path / 's4', seed=4, top1s=(0.5, 0.86))  # older than replicas: no `replica`
  groups = runs.group_by_seed(runs.find_runs([f'{tmp_path}/*']))
  assert [[run.config['seed'] for run in group] for group in groups] == [[0, 1, 2, 3, 4]]
  row = _table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))['ResNet-20']
  # Mean and sample standard deviation of 80, 82, 84 and 86: the diverged seed 2 is left out.
  assert row['top1'] == '83.00 ± 2.58% **(1 of 5 diverged: seed 2 at epoch 1.50)**'
  assert row['seeds'] == '5'
  assert row['time'] == '4 s (3 replicas together), 2 s'
  assert row['recipe'] == '`configs/resnet20.py`'  # --config.num_replicas is not the recipe


def test_a_seed_run_both_as_a_replica_and_alone_is_marked(tmp_path, capsys):
  _write_run(tmp_path / 'x2', seed=0, replicas=[(0.5, 0.8), (0.5, 0.82)])
  _write_run(tmp_path / 's1', seed=1, top1s=(0.5, 0.82))
  row = _table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))['ResNet-20']
  assert row['seeds'] == '3 (seed 1 repeated)'


def test_a_replica_without_rows_is_an_error_not_a_silent_gap(tmp_path):
  workdir = _write_run(tmp_path / 'x2', replicas=[(0.5, 0.8), (0.5, 0.82)])
  config = json.loads((workdir / 'config.json').read_text())
  (workdir / 'config.json').write_text(json.dumps({**config, 'num_replicas': 3}))
  with pytest.raises(SystemExit, match=r'no rows of replica\(s\) \[2\]'):
    results.main([str(workdir), '--no_curves'])


def test_a_workdir_without_metrics_is_an_error_not_a_silent_gap(tmp_path):
  _write_run(tmp_path / 'run')
  (tmp_path / 'run' / 'metrics.jsonl').write_text('')
  with pytest.raises(SystemExit, match='metrics.jsonl has no rows'):
    results.main([str(tmp_path / 'run'), '--no_curves'])


def _assert_png(path, min_bytes=10_000):
  data = path.read_bytes()
  assert data.startswith(PNG_SIGNATURE), path
  assert len(data) >= min_bytes, (path, len(data))


def test_curves_and_the_degradation_figure_are_written_as_png(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  from matplotlib import image

  runs = tmp_path / 'degradation'
  for model, top1s in (
    ('plain20', (0.5, 0.7, 0.8)),
    ('plain56', (0.2, 0.3)),
    ('resnet20', (0.6, 0.8, 0.85)),
    ('resnet56', (0.5, 0.8, 0.83)),
  ):
    _write_run(runs / model, model=model, top1s=top1s, planned_epochs=3)
  _main(capsys, f'{runs}/*')
  for model in ('plain20', 'plain56', 'resnet20', 'resnet56'):
    _assert_png(runs / model / 'curves.png')
  _main(capsys, f'{runs}/*', '--degradation')
  _assert_png(runs / 'degradation.png')
  height, width, _ = image.imread(runs / 'degradation.png').shape
  assert (width, height) == (1000, 400)  # 10 x 4 inches at 100 dpi: small enough to commit


def test_a_replica_workdir_has_one_curves_figure_without_the_diverged_values(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  workdir = _write_run(tmp_path / 'x3', replicas=REPLICA_TOP1S, diverged={2: 15})
  results.main([str(workdir)])
  assert capsys.readouterr().err.count('curves.png') == 1
  _assert_png(workdir / 'curves.png')
  _write_run(tmp_path / 'p20', model='plain20')
  results.main([f'{tmp_path}/*', '--degradation'])
  _assert_png(tmp_path / 'degradation.png')


def test_the_frameworks_of_a_parity_run_are_separate_rows(tmp_path, capsys):
  # tools/parity.py writes the same config.json for both; provenance names the framework.
  _write_run(tmp_path / 'jax', top1s=(0.5, 0.6), framework='jax')
  _write_run(tmp_path / 'torch', top1s=(0.5, 0.7), framework='pytorch')
  rows = _table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))
  assert rows['ResNet-20']['top1'] == '60.00%' and rows['ResNet-20']['seeds'] == '1'
  assert rows['ResNet-20 (PyTorch)']['top1'] == '70.00%'


def test_parity_figure_overlays_the_frameworks_and_needs_both(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  for seed in (0, 1):
    _write_run(tmp_path / f'seed{seed}' / 'jax', seed=seed, framework='jax')
    _write_run(tmp_path / f'seed{seed}' / 'torch', seed=seed, framework='pytorch')
  _main(capsys, f'{tmp_path}/seed*/*', '--parity')
  _assert_png(tmp_path / 'parity.png')
  with pytest.raises(SystemExit, match=r"needs runs of both frameworks.*\['jax'\] only"):
    results.main([f'{tmp_path}/seed*/jax', '--parity'])


def test_parity_figure_averages_train_rows_over_each_epoch():
  rows = [
    {'step': step, 'split': 'train', 'epoch': step / 10, 'loss': loss}
    for step, loss in ((5, 4.0), (10, 2.0), (15, 1.0), (20, 3.0))
  ]
  run = runs.Run('unused', {}, {}, rows)
  assert figures._epoch_means(run, 'loss') == ([1, 2], [3.0, 2.0])  # steps 1-10, then 11-20


def test_timeline_json_gives_the_epoch_length_and_the_planned_run(tmp_path, capsys):
  # No row says epoch 5 of 5, but timeline.json (written by every run) says the run had 50 steps.
  run = _write_run(tmp_path / 'r20', top1s=(0.5, 0.6), planned_epochs=2)
  (run / 'timeline.json').write_text(json.dumps({'epoch_steps': 10, 'total_steps': 50}))
  row = _table_rows(_main(capsys, run, '--no_curves'))['ResNet-20']
  assert row['epochs'] == '**2 of 5 (stopped early)**'


def test_runs_where_jax_is_not_installed(tmp_path):
  _write_run(tmp_path / 'run')
  blocked = (
    'import runpy, sys\n'
    "for name in ('jax', 'jaxlib', 'flax', 'optax', 'ml_collections', 'numpy'):\n"
    '  sys.modules[name] = None\n'
    "sys.argv = ['tools/results.py', *sys.argv[1:]]\n"
    "runpy.run_module('tools.results', run_name='__main__', alter_sys=True)\n"
  )
  result = subprocess.run(
    [sys.executable, '-c', blocked, str(tmp_path / 'run'), '--no_curves'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert '| ResNet-20 | CIFAR-10 |' in result.stdout
