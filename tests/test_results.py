"""tools/results.py on fake workdirs whose numbers are known."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.fake_runs import assert_png, table_rows, write_run
from tools import figures, paper, results, runs
from tools.reproduction import QUEUES

REPO = pathlib.Path(__file__).resolve().parents[1]


def _main(capsys, *args):
  results.main([*map(str, args)])
  return capsys.readouterr().out


def test_seeds_make_one_row_of_the_final_epoch_mean_and_std(tmp_path, capsys):
  # The best epoch (0.9) is never the one reported: the last is.
  for seed, final in enumerate((0.80, 0.82, 0.84)):
    write_run(tmp_path / f'r20_s{seed}', seed=seed, top1s=(0.5, 0.9, final))
  write_run(
    tmp_path / 'r56', model='resnet56', top1s=(0.3, 0.7), steps_per_epoch=5, images_per_second=25.0
  )
  rows = table_rows(
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
  write_run(tmp_path / 'p20', model='plain20', command=command)
  row = table_rows(_main(capsys, tmp_path / 'p20', '--no_curves'))['plain-20']
  assert row['recipe'] == '`configs/resnet20.py`, `schedule.name=cosine`'
  assert row['dataset'] == 'CIFAR-10'


def test_a_run_stopped_early_is_marked_not_hidden(tmp_path, capsys):
  write_run(tmp_path / 'p56', model='plain56', top1s=(0.2, 0.3, 0.45), planned_epochs=5)
  for seed, epochs in enumerate((5, 3)):
    write_run(
      tmp_path / f'p20_s{seed}', model='plain20', seed=seed, top1s=(0.5,) * epochs, planned_epochs=5
    )
  rows = table_rows(_main(capsys, *sorted(tmp_path.iterdir()), '--no_curves'))
  assert rows['plain-56']['epochs'] == '**3 of 5 (stopped early)**'
  assert rows['plain-56']['top1'] == '45.00%'  # its last evaluation, at epoch 3
  assert rows['plain-20']['epochs'] == '5 **(stopped early: seed 1 at 3)**'
  assert rows['plain-20']['seeds'] == '2'


# Replica 2 diverged at step 15, in epoch 2: it has no final top-1 and its last rows no values.
REPLICA_TOP1S = [(0.5, 0.80), (0.5, 0.82), (0.4, 0.6)]


def test_a_replica_workdir_is_a_run_of_each_seed(tmp_path):
  workdir = write_run(
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
  write_run(
    tmp_path / 'x3', seed=0, replicas=REPLICA_TOP1S, diverged={2: 15}, images_per_second=150.0
  )
  write_run(tmp_path / 's3', seed=3, replicas=[(0.5, 0.84)])  # a program of one replica
  write_run(tmp_path / 's4', seed=4, top1s=(0.5, 0.86))  # older than replicas: no `replica`
  groups = runs.group_by_seed(runs.find_runs([f'{tmp_path}/*']))
  assert [[run.config['seed'] for run in group] for group in groups] == [[0, 1, 2, 3, 4]]
  row = table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))['ResNet-20']
  # Mean and sample standard deviation of 80, 82, 84 and 86: the diverged seed 2 is left out.
  assert row['top1'] == '83.00 ± 2.58% **(1 of 5 diverged: seed 2 at epoch 1.50)**'
  assert row['seeds'] == '5'
  assert row['time'] == '4 s (3 replicas together), 2 s'
  assert row['recipe'] == '`configs/resnet20.py`'  # --config.num_replicas is not the recipe


def test_a_seed_run_both_as_a_replica_and_alone_is_marked(tmp_path, capsys):
  write_run(tmp_path / 'x2', seed=0, replicas=[(0.5, 0.8), (0.5, 0.82)])
  write_run(tmp_path / 's1', seed=1, top1s=(0.5, 0.82))
  row = table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))['ResNet-20']
  assert row['seeds'] == '3 (seed 1 repeated)'


def test_a_replica_without_rows_is_an_error_not_a_silent_gap(tmp_path):
  workdir = write_run(tmp_path / 'x2', replicas=[(0.5, 0.8), (0.5, 0.82)])
  config = json.loads((workdir / 'config.json').read_text())
  (workdir / 'config.json').write_text(json.dumps({**config, 'num_replicas': 3}))
  with pytest.raises(SystemExit, match=r'no rows of replica\(s\) \[2\]'):
    results.main([str(workdir), '--no_curves'])


def test_a_workdir_without_metrics_is_an_error_not_a_silent_gap(tmp_path):
  write_run(tmp_path / 'run')
  (tmp_path / 'run' / 'metrics.jsonl').write_text('')
  with pytest.raises(SystemExit, match='metrics.jsonl has no rows'):
    results.main([str(tmp_path / 'run'), '--no_curves'])


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
    write_run(runs / model, model=model, top1s=top1s, planned_epochs=3)
  _main(capsys, f'{runs}/*')
  for model in ('plain20', 'plain56', 'resnet20', 'resnet56'):
    assert_png(runs / model / 'curves.png')
  _main(capsys, f'{runs}/*', '--degradation')
  assert_png(runs / 'degradation.png')
  height, width, _ = image.imread(runs / 'degradation.png').shape
  assert (width, height) == (1000, 400)  # 10 x 4 inches at 100 dpi: small enough to commit


def test_a_replica_workdir_has_one_curves_figure_without_the_diverged_values(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  workdir = write_run(tmp_path / 'x3', replicas=REPLICA_TOP1S, diverged={2: 15})
  results.main([str(workdir)])
  assert capsys.readouterr().err.count('curves.png') == 1
  assert_png(workdir / 'curves.png')
  write_run(tmp_path / 'p20', model='plain20')
  results.main([f'{tmp_path}/*', '--degradation'])
  assert_png(tmp_path / 'degradation.png')


def test_the_frameworks_of_a_parity_run_are_separate_rows(tmp_path, capsys):
  # tools/parity.py writes the same config.json for both; provenance names the framework.
  write_run(tmp_path / 'jax', top1s=(0.5, 0.6), framework='jax')
  write_run(tmp_path / 'torch', top1s=(0.5, 0.7), framework='pytorch')
  rows = table_rows(_main(capsys, f'{tmp_path}/*', '--no_curves'))
  assert rows['ResNet-20']['top1'] == '60.00%' and rows['ResNet-20']['seeds'] == '1'
  assert rows['ResNet-20 (PyTorch)']['top1'] == '70.00%'


def test_parity_figure_overlays_the_frameworks_and_needs_both(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  for seed in (0, 1):
    write_run(tmp_path / f'seed{seed}' / 'jax', seed=seed, framework='jax')
    write_run(tmp_path / f'seed{seed}' / 'torch', seed=seed, framework='pytorch')
  _main(capsys, f'{tmp_path}/seed*/*', '--parity')
  assert_png(tmp_path / 'parity.png')
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
  run = write_run(tmp_path / 'r20', top1s=(0.5, 0.6), planned_epochs=2)
  (run / 'timeline.json').write_text(json.dumps({'epoch_steps': 10, 'total_steps': 50}))
  row = table_rows(_main(capsys, run, '--no_curves'))['ResNet-20']
  assert row['epochs'] == '**2 of 5 (stopped early)**'


def test_runs_where_jax_is_not_installed(tmp_path):
  write_run(tmp_path / 'run')
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


PAPER_COLUMNS = ('net', 'published', 'ours', 'flip', 'seeds', 'data', 'machine', 'date')
JPEG = {'data': 'CIFAR-10 (JPEG copy)'}


def _paper_rows(capsys, folder, *args):
  return table_rows(_main(capsys, '--paper', folder, *args), PAPER_COLUMNS)


def test_paper_table_has_every_entry_of_the_queue_in_order_run_or_not(tmp_path, capsys):
  # Neither counts: a recipe of its own (cosine), and a ResNet-20 seed stopped at epoch 2 of 3.
  write_run(
    tmp_path / 'cosine',
    command=['launch.py', '--config=configs/resnet20.py', '--config.schedule.name=cosine'],
  )
  write_run(tmp_path / 'reproduction/resnet20/s0', top1s=(0.5, 0.9), planned_epochs=3)
  rows = _paper_rows(capsys, tmp_path, '--no_curves')
  assert list(rows) == [
    'ResNet-20',
    'plain-20',
    'ResNet-56',
    'plain-56',
    'ResNet-110',
    'ResNet-32',
    'ResNet-44',
    'ResNet-18',
    'ResNet-20 (PyTorch)',
    'ResNet-18 + cutout',  # an entry's own name for its net
    'PreAct ResNet-18',
    'PreAct ResNet-164',
    'PreAct ResNet-1001',
    'WRN-16-8',
    'WRN-28-10',
    'WRN-28-10 dropout',
  ]
  assert all(row['ours'] == 'not run' and row['flip'] == '-' for row in rows.values())
  assert rows['ResNet-20']['seeds'] == '0 / 5 (+1 stopped early)'
  assert rows['ResNet-56']['seeds'] == '0 / 5'
  assert (
    rows['ResNet-56']['published'] == '6.97 [1]' and rows['plain-20']['published'] == 'curve [2]'
  )
  out = _main(capsys, '--paper', tmp_path, '--queue=test', '--no_curves')
  assert list(table_rows(out, PAPER_COLUMNS)) == ['tiny', 'tiny_long']
  assert 'not comparable' in out and 'JPEG copy' in out


def test_paper_table_gives_the_mean_and_std_of_the_error_over_seeds(tmp_path, capsys):
  reproduction = tmp_path / 'h200_2026-12-02' / 'reproduction'
  # ResNet-20: a program of 2 replicas, seeds 0 and 1: errors 9 and 7; flip TTA 8 and 6.
  x2 = write_run(
    reproduction / 'resnet20/x2', replicas=[(0.5, 0.91), (0.5, 0.93)], provenance_extra=JPEG
  )
  (x2 / 'eval_20.json').write_text(
    json.dumps(
      {
        'step': 20,
        'test': {
          'top1': 0.92,
          'top1_flip_tta': 0.93,
          'replicas': [
            {'replica': 0, 'seed': 0, 'top1': 0.91, 'top1_flip_tta': 0.92},
            {'replica': 1, 'seed': 1, 'top1': 0.93, 'top1_flip_tta': 0.94},
          ],
        },
      }
    )
  )
  # ResNet-56: two programs of one seed each, errors 7 and 6, the second without a data label.
  for seed, (top1, extra) in enumerate(((0.93, JPEG), (0.94, {}))):
    write_run(
      reproduction / f'resnet56/s{seed}',
      seed=seed,
      model='resnet56',
      top1s=(0.5, top1),
      config_file='configs/resnet56.py',
      provenance_extra=extra,
    )
  # ResNet-32: seed 2 of 3 diverged at step 15 (epoch 1.5): marked, and left out of the mean.
  write_run(
    reproduction / 'resnet32/x3',
    model='resnet32',
    replicas=[(0.5, 0.92), (0.5, 0.90), (0.5, 0.5)],
    diverged={2: 15},
    config_file='configs/resnet32.py',
  )
  rows = _paper_rows(capsys, tmp_path, '--no_curves')
  r20 = rows['ResNet-20']
  assert (r20['ours'], r20['flip'], r20['seeds']) == ('8.00 ± 1.41%', '7.00 ± 1.41%', '2 / 5')
  assert (r20['data'], r20['machine'], r20['date']) == (
    'CIFAR-10 (JPEG copy)',
    'Fake GPU',
    '2026-11-27',
  )
  r56 = rows['ResNet-56']
  assert (r56['ours'], r56['flip'], r56['data']) == ('6.50 ± 0.71%', '-', 'CIFAR-10 (JPEG copy), ?')
  assert rows['ResNet-32']['ours'] == '9.00 ± 1.41% **(1 of 3 diverged: seed 2 at epoch 1.50)**'
  assert rows['ResNet-32']['seeds'] == '3 / 5'
  assert rows['ResNet-20 (PyTorch)']['ours'] == 'not run'  # the JAX runs are not its seeds


def test_paper_table_says_when_the_newest_projection_needs_a_longer_window(tmp_path, capsys):
  for date, entry, fits in (
    ('2026-12-01', 'resnet110', True),
    ('2026-12-02', 'resnet110', False),
    ('2026-12-01', 'resnet44', False),
    ('2026-12-02', 'resnet44', True),
  ):
    folder = tmp_path / f'h200_{date}' / 'reproduction' / entry
    folder.mkdir(parents=True)
    projection = {'entry': entry, 'device_kind': 'NVIDIA H200', 'date': date, 'fits': fits}
    projection.update(budget_s=420.0, seconds_per_seed=680.0)
    (folder / 'projection.json').write_text(json.dumps(projection))
  rows = _paper_rows(capsys, tmp_path, '--no_curves')
  assert rows['ResNet-110']['ours'] == (
    'not run: needs a longer window (one seed about 11.3 min on NVIDIA H200)'
  )
  assert rows['ResNet-44']['ours'] == 'not run'


def test_paper_figure6_is_drawn_from_the_entries_that_ran(tmp_path, capsys):
  pytest.importorskip('matplotlib')
  results.main(['--paper', str(tmp_path)])
  assert 'figure6.png not drawn: no runs of ResNet-20, plain-20' in capsys.readouterr().err
  assert not (tmp_path / 'figure6.png').exists()
  for seed in (0, 1):
    write_run(tmp_path / f'r20_s{seed}', seed=seed, top1s=(0.7, 0.9, 0.92), provenance_extra=JPEG)
  write_run(
    tmp_path / 'p20',
    model='plain20',
    top1s=(0.6, 0.85, 0.88),
    config_file='configs/paper_cifar.py:plain20',
  )
  results.main(['--paper', str(tmp_path)])
  assert 'without ResNet-56, plain-56 (not run)' in capsys.readouterr().err
  assert_png(tmp_path / 'figure6.png')


def test_paper_figure6_averages_the_error_over_seeds_at_each_step():
  rows = [[{'step': 10, 'split': 'train', 'top1': top1}] for top1 in (0.9, 0.8)]
  group = [runs.Run('unused', {}, {}, mine) for mine in rows]
  steps, errors = figures._mean_error_by_step(group, 'train')
  assert steps == [10] and errors == pytest.approx([15.0])


def test_write_readme_changes_the_block_only(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_text(f'# before\n{paper.BEGIN}\nold table\n{paper.END}\nafter\n')
  paper.write_readme(['| new |', 'note'], str(readme))
  assert readme.read_text() == f'# before\n{paper.BEGIN}\n| new |\nnote\n{paper.END}\nafter\n'


def test_readme_paper_table_is_what_the_committed_results_give():
  # Fails when results/ changed and `python -m tools.results --paper --write_readme` was not run.
  folder = str(REPO / 'results')
  expected = paper.block(paper.table(QUEUES['paper'], runs.runs_under(folder), folder))
  assert paper.readme_table(str(REPO / 'README.md')) == expected
