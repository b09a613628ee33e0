"""tools/reproduce.py: a GPU window's work, dry-run on the CPU with the test queue's tiny entries."""

import datetime
import json
import os
import re
import subprocess
import sys
import tarfile

from tests import launching
from tests.fake_runs import write_run
from tools import reproduce, reproduction
from tools.runs import runs_under


def _speed_rows(folder, device_kind, step_s):
  """A committed speed.jsonl saying N replicas of resnet_test take step_s[N] a step."""
  folder.mkdir(parents=True)
  rows = [
    {
      'device_kind': device_kind,
      'date': '2026-12-01T00:00:00',
      'model': 'resnet_test',
      'dtype': 'float32',
      'batch_size': 8,
      'framework': 'JAX',
      'variant': 'data path',
      'replicas': n,
      'steps_per_call': 1,
      'xla_flags': '',
      'images_per_second': n * 8 / seconds,
      'error': None,
    }
    for n, seconds in step_s.items()
  ]
  (folder / 'speed.jsonl').write_text(''.join(json.dumps(row) + '\n' for row in rows))


def _window(results, out, cifar_dir, *extra):
  return reproduce.main(
    [
      'run',
      '--queue=test',
      f'--results={results}',
      f'--data_dir={cifar_dir}',
      '--data_label=CIFAR-10 (JPEG copy)',
      f'--out_dir={out}',
      '--probe_steps=4',
      *extra,
    ]
  )


def test_a_window_trains_the_missing_seeds_then_marks_what_cannot_fit(
  cifar_dir, tmp_path, monkeypatch, capsys
):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '1')
  results, out = tmp_path / 'results', tmp_path / 'out'
  # The committed speed rows say 2 replicas cost what 1 does: both seeds go in one program.
  _speed_rows(results / 'cpu_2026-12-01', 'cpu', {1: 0.01, 2: 0.01})

  assert _window(results, out, cifar_dir, '--budget_s=600') == 0
  said = capsys.readouterr().out
  folder = out / f'cpu_{datetime.date.today().isoformat()}' / 'reproduction'
  workdir = folder / 'tiny' / 'seed0-1'
  assert 'tiny seeds 0..1: trained' in said
  assert 'tiny_long needs a longer window' in said
  # Records only: no checkpoint, no probe workdir, the eval with and without flip TTA.
  assert sorted(os.listdir(workdir)) == [
    'config.json',
    'eval_12.json',
    'metrics.jsonl',
    'provenance.json',
    'timeline.json',
    'train.log',
  ]
  config = json.loads((workdir / 'config.json').read_text())
  assert (config['seed'], config['num_replicas'], config['num_train_steps']) == (0, 2, 12)
  test = json.loads((workdir / 'eval_12.json').read_text())['test']
  assert [r['seed'] for r in test['replicas']] == [0, 1]
  assert all('top1' in r and 'top1_flip_tta' in r for r in test['replicas'])
  provenance = json.loads((workdir / 'provenance.json').read_text())
  assert (provenance['data'], provenance['reproduction_entry']) == ('CIFAR-10 (JPEG copy)', 'tiny')
  runs = runs_under(str(out))
  tiny, tiny_long = reproduction.TEST
  assert [run.config['seed'] for run in reproduction.seeds_of(tiny, runs)] == [0, 1]
  assert reproduction.seeds_of(tiny_long, runs) == []
  projection = json.loads((folder / 'tiny_long' / 'projection.json').read_text())
  assert projection['fits'] is False and projection['seconds_per_seed'] > 600
  assert not (folder / 'tiny_long' / 'seed0').exists()

  # Committed, the next window has nothing to do: tiny is complete, tiny_long too long here.
  assert _window(out, tmp_path / 'out2', cifar_dir, '--budget_s=600') == 0
  assert 'no entry left' in capsys.readouterr().out
  assert not (tmp_path / 'out2').exists()
  reproduce.main(['status', '--queue=test', f'--results={out}'])
  table = capsys.readouterr().out
  assert '| 2 / 2 |' in table and 'needs a longer window' in table


def test_results_folders_are_named_by_the_gpu_and_the_date():
  day = datetime.date(2026, 12, 2)
  assert reproduce.results_folder('NVIDIA H200', day) == 'h200_2026-12-02'
  assert reproduce.results_folder('NVIDIA H100 80GB HBM3', day) == 'h100_2026-12-02'
  assert reproduce.results_folder('cpu', day) == 'cpu_2026-12-02'


def test_the_replica_count_comes_from_the_newest_matching_speed_rows(tmp_path):
  _speed_rows(tmp_path / 'a', 'NVIDIA H200', {1: 0.004, 2: 0.005})
  _speed_rows(tmp_path / 'b', 'NVIDIA H100 80GB HBM3', {1: 0.009, 4: 0.02})
  steps = reproduce.benchmark_step_seconds(
    str(tmp_path), 'NVIDIA H200', 'resnet_test', 'float32', 8
  )
  assert steps == {1: 0.004, 2: 0.005}
  assert (
    reproduce.benchmark_step_seconds(str(tmp_path), 'NVIDIA H200', 'resnet20', 'float32', 8) == {}
  )


def test_a_window_needs_a_data_label_and_budget_0_needs_an_entry(capsys):
  for argv in (
    ['run', '--data_dir=x', '--out_dir=y'],
    ['run', '--data_dir=x', '--out_dir=y', '--data_label=CIFAR-10', '--budget_s=0'],
    ['run', '--data_dir=x', '--out_dir=y', '--data_label=CIFAR-10', '--entry=resnet1000'],
  ):
    try:
      reproduce.main(argv)
    except SystemExit as e:
      assert e.code == 2
    else:
      raise AssertionError(f'{argv} was accepted')
  assert 'needs --entry' in capsys.readouterr().err


def test_the_window_script_runs_the_queue_then_speed_rows_into_one_archive(cifar_dir, tmp_path):
  """tools/gpu_window.sh as a GPU window runs it, on the CPU: the test queue already done (its
  seeds committed, its long entry too long here), so the time goes to the speed rows."""
  results = tmp_path / 'results'
  tiny = reproduction.TEST[0]
  write_run(
    results / 'cpu_2026-12-01' / 'reproduction' / 'tiny' / 'seed0-1',
    model='resnet_test',
    replicas=[(0.5, 0.8), (0.6, 0.7)],
    command=['launch.py', *tiny.launch_args(), '--config.seed=0', '--config.num_replicas=2'],
  )
  projection = {'entry': 'tiny_long', 'device_kind': 'cpu', 'date': '2026-12-01', 'fits': False}
  (results / 'cpu_2026-12-01' / 'reproduction' / 'tiny_long').mkdir()
  (results / 'cpu_2026-12-01' / 'reproduction' / 'tiny_long' / 'projection.json').write_text(
    json.dumps({**projection, 'budget_s': 420, 'seconds_per_seed': 9999})
  )
  # No JAX_PLATFORMS, as on the device machine: JAX looks for every backend it knows.
  env = {
    **{k: v for k, v in launching.env(devices=1).items() if k != 'JAX_PLATFORMS'},
    'PYTHON': sys.executable,
    'QUEUE': 'test',
    'SPEED_ROWS': 'cpu_test',
    'RESULTS': str(results),
    'CIFAR_DIR': str(cifar_dir),
  }
  out = tmp_path / 'out'
  done = subprocess.run(
    ['bash', str(launching.REPO / 'tools' / 'gpu_window.sh'), str(out), '200'],
    env=env,
    capture_output=True,
    text=True,
    timeout=launching.TIMEOUT_S,
  )
  said = done.stdout + done.stderr
  assert done.returncode == 0, said
  assert 'no entry left' in said
  # What a window prints is the tools' own lines, not the libraries' start-up noise: no backend
  # search, no orbax, no absl-formatted log line of a child (I1202 12:00:00 ...).
  assert 'Unable to initialize backend' not in said and 'orbax' not in said.lower()
  assert not re.search(r'^[IWE]\d{4} ', said, re.MULTILINE), said
  with tarfile.open(out / 'window.tar.gz') as archive:
    names = archive.getnames()
  folder = f'./cpu_{datetime.date.today().isoformat()}'
  speed = [n for n in names if n.startswith(f'{folder}/speed_') and n.endswith('speed.jsonl')]
  assert len(speed) == 1 and any(n.endswith('summary.txt') for n in names), names
  assert not any('/reproduction/' in n for n in names)  # nothing trained, nothing copied
