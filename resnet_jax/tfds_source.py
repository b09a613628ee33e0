"""The 'tfds' source: CIFAR through tensorflow-datasets, prepared as ArrayRecord, read once.

tfds's CIFAR builder needs TensorFlow to prepare the dataset (it reads the downloaded archive with
tf.io.gfile), so preparation runs in a child process, `python -m resnet_jax.tfds_source NAME DIR`,
with the CPU-only tensorflow-cpu; TensorFlow never loads into the training process. Reading goes
through `tfds.data_source` (ArrayRecord, images decoded by Pillow) into uint8 arrays.

tensorflow_datasets itself is imported inside the functions, so the package imports without it.
"""

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np

from resnet_jax import archive_source
from resnet_jax.cifar import Split
from resnet_jax.errors import UserError

DOWNLOAD_HOST = 'www.cs.toronto.edu'  # where tfds's CIFAR builders download the archives
PROBE_TIMEOUT_S = 5.0
PREPARE_TIMEOUT_S = 3600


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


def _probe_network(name: str, data_dir: str) -> None:
  """Fails in seconds where tfds would retry its download for minutes."""
  try:
    socket.create_connection((DOWNLOAD_HOST, 443), timeout=PROBE_TIMEOUT_S).close()
  except OSError as e:
    archive = archive_source.tarball(name)
    raise UserError(
      f'{name} is not prepared in {_data_dir(data_dir)}, and {DOWNLOAD_HOST} cannot be '
      f'reached to download it ({e}). Offline, copy the official archive {archive} into a '
      'folder and run with --config.dataset.source=archive '
      '--config.dataset.data_dir=THAT_FOLDER.'
    ) from e


def prepare(name: str, data_dir: str) -> None:
  """Prepares `name` under data_dir unless it is there already; TensorFlow runs in a child."""
  if _builder(name, data_dir).is_prepared():
    return
  _probe_network(name, data_dir)
  command = [sys.executable, '-m', 'resnet_jax.tfds_source', name, _data_dir(data_dir)]
  # The child sees no GPU: TensorFlow must not take accelerator memory beside JAX.
  env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'TF_CPP_MIN_LOG_LEVEL': '2'}
  start = time.perf_counter()
  result = subprocess.run(
    command, env=env, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S
  )
  if result.returncode != 0:
    raise UserError(
      f'Preparing {name} with tensorflow-datasets in {_data_dir(data_dir)} '
      f'failed:\n{result.stderr[-3000:]}\nIs tensorflow-cpu installed '
      '(pip install -r requirements.txt)?'
    )
  print(
    f'Prepared {name} in {_data_dir(data_dir)} in {time.perf_counter() - start:.1f} s.',
    file=sys.stderr,
  )


def _read_split(name: str, split: str, data_dir: str) -> Split:
  import tensorflow_datasets as tfds

  source = tfds.data_source(
    name,
    split=split,
    data_dir=_data_dir(data_dir),
    download=False,
    builder_kwargs={'file_format': 'array_record'},
  )
  images = np.empty((len(source), 32, 32, 3), np.uint8)
  labels = np.empty((len(source),), np.int32)
  ids = []
  # One record at a time: some data sources (tfds.testing.mock_data's) have no batched getter.
  for i in range(len(source)):
    record = source[i]
    images[i] = record['image']
    labels[i] = record['label']
    ids.append(record['id'])
  # tfds shuffles records as it writes them; its ids ('train_00042') give back the official
  # order, so both sources yield the same arrays (and the same validation split).
  order = np.argsort(np.asarray(ids), kind='stable')
  return Split(images[order], labels[order])


def load(name: str, data_dir: str) -> tuple[Split, Split]:
  """(train, test) of a prepared dataset, in the official order."""
  import tensorflow_datasets as tfds

  try:
    return (_read_split(name, 'train', data_dir), _read_split(name, 'test', data_dir))
  except (tfds.core.DatasetNotFoundError, FileNotFoundError) as e:
    raise UserError(f'{name} is not prepared as ArrayRecord in {_data_dir(data_dir)} ({e}).') from e


def download_and_prepare(name: str, data_dir: str) -> None:
  """The child's work: tfds's own builder downloads and prepares the dataset (needs TF)."""
  _builder(name, data_dir).download_and_prepare()


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description='Prepare a CIFAR dataset with tfds (needs TF).')
  parser.add_argument('name')
  parser.add_argument('data_dir')
  args = parser.parse_args()
  download_and_prepare(args.name, args.data_dir)
