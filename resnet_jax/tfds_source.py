"""The 'tfds' source: datasets through tensorflow-datasets, prepared as ArrayRecord, read once.

CIFAR-10 and CIFAR-100 for training, and the other test sets of extra_sets.py (CIFAR-10.1,
CIFAR-10-C). tfds's builders need TensorFlow to prepare a dataset (they read the downloaded files
with tf.io.gfile), so preparation runs in a child process, `python -m resnet_jax.tfds_source
NAME... DIR`, with the CPU-only tensorflow-cpu; TensorFlow never loads into the training process.
Reading goes through `tfds.data_source` (ArrayRecord, images decoded by Pillow) into uint8 arrays,
which are cached beside the prepared dataset: later starts load them instead of decoding again.

tensorflow_datasets itself is imported inside the functions, so the package imports without it.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

from resnet_jax import archive_source, array_cache, cifar, extra_sets
from resnet_jax.errors import UserError

# Where each tfds builder downloads its files (the host of its URLs), by dataset name.
DOWNLOAD_HOSTS = {
  'cifar10': 'www.cs.toronto.edu',
  'cifar100': 'www.cs.toronto.edu',
  'cifar10_1': 'github.com',
  'cifar10_corrupted': 'zenodo.org',
}
PROBE_TIMEOUT_S = 5.0
PREPARE_TIMEOUT_S = 3600
READ_BATCH = 1000  # records a read asks for at once
# Beside each prepared dataset's record files (data_dir/NAME/VERSION/): its splits as decoded
# uint8 arrays, so later starts skip the decoding (resnet_jax/array_cache.py).
CACHE_FOLDER = 'uint8_arrays'


def _data_dir(data_dir: str) -> str:
  return os.path.abspath(os.path.expanduser(data_dir))


def _builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds

  try:
    return tfds.builder(name, data_dir=_data_dir(data_dir), file_format='array_record')
  except ValueError as e:
    # tfds refuses a folder prepared in another format (tfds.load's default, TFRecord), which
    # tfds.data_source could not read anyway.
    if 'File format is already set' not in str(e):
      raise
    raise UserError(
      f'{_data_dir(data_dir)} holds a copy of {name} prepared in another format than '
      f'ArrayRecord ({e}); tfds.data_source cannot read it. Point --config.dataset.data_dir at '
      "another folder (the default, data, is this project's own), where it will be prepared "
      'as ArrayRecord.'
    ) from e


def _listing(names: Sequence[str]) -> str:
  return ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')


def _probe_network(names: Sequence[str], data_dir: str) -> None:
  """Fails in seconds where tfds would retry its download for minutes: probes each host once."""
  by_host: dict[str, list[str]] = {}
  for name in names:
    by_host.setdefault(DOWNLOAD_HOSTS[extra_sets.family(name)], []).append(name)
  for host, missing in by_host.items():
    try:
      socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
      family = extra_sets.family(missing[0])
      unreachable = (
        f'{_listing(missing)} {"is" if len(missing) == 1 else "are"} not prepared in '
        f'{_data_dir(data_dir)}, and {host} cannot be reached to download '
        f'{"it" if len(missing) == 1 else "them"} ({e}).'
      )
      if family in cifar.DATASET_NAMES:
        advice = (
          f'Offline, copy the official archive {archive_source.tarball(family)} into a folder '
          'and run with --config.dataset.source=archive --config.dataset.data_dir=THAT_FOLDER.'
        )
      else:
        # tfds is the only reader of these: no archive source to fall back on.
        command = ' '.join(missing) if len(missing) <= 3 else family
        advice = (
          f'{family} has no archive source: it needs the network once. Prepare it on a machine '
          f'that reaches {host} (python -m resnet_jax.tfds_source {command} DIR), or copy a '
          f'prepared tfds data_dir from another machine: its {family}/ folder into '
          f'{_data_dir(data_dir)}.'
        )
      raise UserError(f'{unreachable} {advice}') from e


def prepare(names: Sequence[str], data_dir: str) -> None:
  """Prepares those of the tfds `names` not yet under data_dir; TensorFlow runs in one child."""
  missing = [name for name in names if not _builder(name, data_dir).is_prepared()]
  if not missing:
    return
  _probe_network(missing, data_dir)
  command = [sys.executable, '-m', 'resnet_jax.tfds_source', *missing, _data_dir(data_dir)]
  # The child sees no GPU: TensorFlow must not take accelerator memory beside JAX.
  env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'TF_CPP_MIN_LOG_LEVEL': '2'}
  start = time.perf_counter()
  result = subprocess.run(
    command, env=env, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S
  )
  if result.returncode != 0:
    raise UserError(
      f'Preparing {_listing(missing)} with tensorflow-datasets in {_data_dir(data_dir)} '
      f'failed:\n{result.stderr[-3000:]}\nIs tensorflow-cpu installed '
      '(pip install -r requirements.txt)?'
    )
  print(
    f'Prepared {_listing(missing)} in {_data_dir(data_dir)} in '
    f'{time.perf_counter() - start:.1f} s.',
    file=sys.stderr,
  )


def _read_split(name: str, split: str, data_dir: str) -> cifar.Split:
  """The split's arrays: from the cache beside the prepared dataset when it is of its record files
  as they are now, else decoded from the records (and cached)."""
  import tensorflow_datasets as tfds

  source = tfds.data_source(
    name,
    split=split,
    data_dir=_data_dir(data_dir),
    download=False,
    builder_kwargs={'file_format': 'array_record'},
  )
  info = source.dataset_info
  try:
    files = info.splits[split].filepaths
  except KeyError:  # no files to key a cache on (tfds.testing.mock_data's sources)
    return _decode(source)
  stats = [
    (os.path.basename(f), s.st_size, s.st_mtime_ns) for f, s in zip(files, map(os.stat, files))
  ]
  key = json.dumps({'version': str(info.version), 'files': stats})
  path = os.path.join(info.data_dir, CACHE_FOLDER, f'{split}.npz')
  cached = array_cache.load(path, key)
  if cached is not None and len(cached['labels']) == len(source):
    return cifar.Split(cached['images'], cached['labels'])
  split_arrays = _decode(source)
  array_cache.save(path, key, {'images': split_arrays.images, 'labels': split_arrays.labels})
  return split_arrays


def _decode(source) -> cifar.Split:
  """Every record of a tfds data source, decoded into arrays (CIFAR's in the official order)."""
  images = np.empty((len(source), 32, 32, 3), np.uint8)
  labels = np.empty((len(source),), np.int32)
  ids = []
  for i, record in enumerate(_records(source)):
    images[i] = record['image']
    labels[i] = record['label']
    if 'id' in record:
      ids.append(record['id'])
  if not ids:  # CIFAR-10.1 and CIFAR-10-C have none; their order changes no metric
    return cifar.Split(images, labels)
  # tfds shuffles records as it writes them; CIFAR's ids ('train_00042') give back the official
  # order, so both sources yield the same arrays (and the same validation split).
  order = np.argsort(np.asarray(ids), kind='stable')
  return cifar.Split(images[order], labels[order])


def _records(source) -> Iterator[dict]:
  """The records in order, read a batch at a time: ArrayRecord reads a batch in one go, several
  times faster than one record at a time. (Threads decoding batches in parallel gained nothing:
  tfds decodes under the GIL.)"""
  for start in range(0, len(source), READ_BATCH):
    keys = range(start, min(start + READ_BATCH, len(source)))
    try:
      batch = source.__getitems__(list(keys))
    except TypeError:  # tfds.testing.mock_data's batched getter is broken: one at a time
      batch = [source[i] for i in keys]
    yield from batch


def load(
  name: str, data_dir: str, splits: Sequence[str] = ('train', 'test')
) -> tuple[cifar.Split, ...]:
  """The splits of a prepared dataset (default train and test), CIFAR's in the official order."""
  import tensorflow_datasets as tfds

  try:
    return tuple(_read_split(name, split, data_dir) for split in splits)
  except (tfds.core.DatasetNotFoundError, FileNotFoundError) as e:
    raise UserError(f'{name} is not prepared as ArrayRecord in {_data_dir(data_dir)} ({e}).') from e


def download_and_prepare(names: Sequence[str], data_dir: str) -> None:
  """The child's work: tfds's own builders download and prepare the datasets (needs TF)."""
  for name in names:
    _builder(name, data_dir).download_and_prepare()


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description='Prepare tfds datasets as ArrayRecord (needs TF).')
  parser.add_argument(
    'names', nargs='+', help='cifar10, cifar100, or names as config.eval.extra_datasets takes them'
  )
  parser.add_argument('data_dir')
  args = parser.parse_args()
  download_and_prepare(extra_sets.expand(args.names), args.data_dir)
