"""Prepares tfds datasets from local files, as tfds_source's child would, without downloading.

    hosts = prepare_offline(data_dir, folder, ['cifar10_1', 'cifar10_corrupted/fog_1'])

runs `python -m tests.tfds_offline DATA_DIR FOLDER NAME...`: tfds's real builders (with
TensorFlow, in that child process only), with only their downloads replaced, so tests exercise the
real preparation offline. download_and_extract(url) gives FOLDER, where the archives are extracted
(CIFAR's cifar-10-batches-bin/, CIFAR-10-C/); download(urls) gives each URL's file by its name in
FOLDER (CIFAR-10.1's .npy files). The hosts of the URLs asked for come back, so tests can check
that the network probe asks the builders' own.
"""

import os
import pathlib
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from unittest import mock

REPO = pathlib.Path(__file__).resolve().parents[1]


def prepare_offline(data_dir: pathlib.Path, folder: pathlib.Path, names: Sequence[str]) -> set[str]:
  """Prepares `names` in data_dir from the files in folder; returns the hosts they come from."""
  result = subprocess.run(
    [sys.executable, '-m', 'tests.tfds_offline', str(data_dir), str(folder), *names],
    timeout=300,
    cwd=REPO,
    capture_output=True,
    text=True,
    env={**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'TF_CPP_MIN_LOG_LEVEL': '2'},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  urls = [line.split()[1] for line in result.stdout.splitlines() if line.startswith('download ')]
  return {urllib.parse.urlparse(url).hostname for url in urls}


def _extracted(folder: str, url: str) -> str:
  print('download', url)
  return folder


def _downloaded(folder: str, urls: list[str]) -> list[str]:
  for url in urls:
    print('download', url)
  return [os.path.join(folder, os.path.basename(urllib.parse.urlparse(url).path)) for url in urls]


if __name__ == '__main__':
  import tensorflow_datasets as tfds

  from resnet_jax import tfds_source

  data_dir, folder, *names = sys.argv[1:]
  manager = tfds.download.DownloadManager
  with (
    mock.patch.object(manager, 'download_and_extract', lambda _, url: _extracted(folder, url)),
    mock.patch.object(manager, 'download', lambda _, urls: _downloaded(folder, urls)),
  ):
    tfds_source.download_and_prepare(names, data_dir)
