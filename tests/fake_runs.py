"""Fake run workdirs whose numbers are known, for the tests of tools/results.py and tools/paper.py,
and readers of what those print and draw."""

import json

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def write_run(
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
  config_file='configs/resnet20.py',
  provenance_extra=None,
):
  """A workdir with one train and one test row per epoch; top1s: the test top-1 of each epoch.

  Each epoch of steps_per_epoch steps at images_per_second takes
  steps_per_epoch * batch_size * (replicas) / images_per_second seconds (1 s by default).
  Without replicas, the rows and config of a run older than replicas (no `replica`, `seed` or
  num_replicas); with them (replica k's top1s at index k), those of a program of
  len(replicas) replicas, where replica k diverged at step diverged[k] if given. Without a
  command, that of launch.py with config_file and bookkeeping overrides; provenance_extra: more
  provenance.json fields (tools/reproduce.py's `data`, say).
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
      f'--config={config_file}',
      f'--config.seed={seed}',
      '--config.dataset.data_dir=/tmp/x',
      *([f'--config.num_replicas={len(replicas)}'] if replicas else []),
    ],
  }
  if framework:
    provenance['framework'] = framework
  provenance.update(provenance_extra or {})
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


RESULTS_COLUMNS = (
  'model',
  'dataset',
  'recipe',
  'epochs',
  'top1',
  'seeds',
  'time',
  'machine',
  'date',
)


def table_rows(text, columns=RESULTS_COLUMNS):
  """first cell -> the cells of its row of the markdown table, named by columns; in order."""
  lines = [line for line in text.splitlines() if line.startswith('| ')]
  rows = {}
  for line in lines[1:]:  # lines[0] is the header; the separator starts '|---'
    cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
    rows[cells[0]] = dict(zip(columns, cells))
  return rows


def assert_png(path, min_bytes=10_000):
  data = path.read_bytes()
  assert data.startswith(PNG_SIGNATURE), path
  assert len(data) >= min_bytes, (path, len(data))
