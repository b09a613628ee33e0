"""The tfds source: mock data, the real CIFAR builders on small archives, and the offline error."""

import logging
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from benchmarks import data_start  # noqa: E402
from resnet_jax import archive_source, cifar, data, tfds_source  # noqa: E402
from resnet_jax.errors import UserError  # noqa: E402
from tests import fake_cifar  # noqa: E402
from tests.tfds_offline import REPO, prepare_offline  # noqa: E402

WRITERS = {'cifar10': fake_cifar.write_cifar10, 'cifar100': fake_cifar.write_cifar100}


@pytest.mark.parametrize('name', cifar.DATASET_NAMES)
def test_mock_data_reads_into_uint8_arrays(name, tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    dataset = data.load(name, 'tfds', str(tmp_path), validation_size=4)
  assert dataset.train.images.shape == (8, 32, 32, 3)
  assert dataset.validation.images.shape == (4, 32, 32, 3)
  assert dataset.test.images.shape == (12, 32, 32, 3)
  assert dataset.train.images.dtype == np.uint8 and dataset.train.labels.dtype == np.int32
  assert dataset.num_classes == cifar.NUM_CLASSES[name]
  assert 0 <= dataset.test.labels.min() and dataset.test.labels.max() < dataset.num_classes


@pytest.mark.parametrize('name', cifar.DATASET_NAMES)
def test_real_builder_prepares_a_local_archive_and_reads_it_back_exactly(name, tmp_path):
  fake = WRITERS[name](tmp_path / 'archive', form='parent')
  start = time.perf_counter()
  hosts = prepare_offline(tmp_path / 'tfds', tmp_path / 'archive', [name])
  print(f'prepared {name} in {time.perf_counter() - start:.1f} s')
  assert hosts == {tfds_source.DOWNLOAD_HOSTS[name]}  # what the network probe asks
  train, test = tfds_source.load(name, str(tmp_path / 'tfds'))
  np.testing.assert_array_equal(train.images, fake.train_images)
  np.testing.assert_array_equal(train.labels, fake.train_labels)
  np.testing.assert_array_equal(test.images, fake.test_images)
  np.testing.assert_array_equal(test.labels, fake.test_labels)
  # The same arrays as the archive source gives: the two sources are interchangeable.
  archive_train, _ = archive_source.load(name, str(tmp_path / 'archive'))
  np.testing.assert_array_equal(train.images, archive_train.images)
  # Prepared once: a second prepare finds it and starts no child.
  start = time.perf_counter()
  tfds_source.prepare([name], str(tmp_path / 'tfds'))
  assert time.perf_counter() - start < 2


@pytest.fixture(scope='module')
def prepared_cifar10(tmp_path_factory) -> tuple[pathlib.Path, fake_cifar.FakeCifar]:
  """A data_dir where the real builder prepared a fake CIFAR-10, and its examples."""
  folder = tmp_path_factory.mktemp('prepared')
  fake = fake_cifar.write_cifar10(folder / 'archive', form='parent')
  prepare_offline(folder / 'tfds', folder / 'archive', ['cifar10'])
  return folder / 'tfds', fake


def test_tensorflow_never_loads_into_the_training_process(prepared_cifar10, tmp_path):
  # A fresh interpreter: this one may have loaded TensorFlow for other tests' readers.
  data_dir = str(prepared_cifar10[0])
  script = f"""
import sys
from resnet_jax import models
assert 'tensorflow_datasets' not in sys.modules, 'models imports tfds'
from resnet_jax import records, tfds_source, train
tfds_source.prepare(['cifar10'], {data_dir!r})  # prepared: starts no child
tfds_source.load('cifar10', {data_dir!r})
log = records.MetricsLog({str(tmp_path / 'run')!r}, 0, seeds=[0])
log.write(1, 'train', [{{'loss': 1.0}}])
log.close()
print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))
"""
  result = subprocess.run(
    [sys.executable, '-c', script], capture_output=True, text=True, timeout=300, cwd=REPO
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == '[]'


def test_a_second_load_reads_the_cache_and_a_stale_or_damaged_one_is_rebuilt(
  prepared_cifar10, monkeypatch, caplog
):
  data_dir, fake = prepared_cifar10
  (version_dir,) = (data_dir / 'cifar10').iterdir()
  cache = version_dir / tfds_source.CACHE_FOLDER
  shutil.rmtree(cache, ignore_errors=True)  # another test's load may have written it
  decoded = []  # the splits decoded from their records, by each load
  decode = tfds_source._decode
  monkeypatch.setattr(
    tfds_source, '_decode', lambda source: decoded.append(source.split) or decode(source)
  )

  def load() -> list[str]:
    decoded.clear()
    train, test = tfds_source.load('cifar10', str(data_dir))
    for ours, theirs in (
      (train.images, fake.train_images),
      (train.labels, fake.train_labels),
      (test.images, fake.test_images),
      (test.labels, fake.test_labels),
    ):
      np.testing.assert_array_equal(ours, theirs)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    return decoded

  assert load() == ['train', 'test']
  assert sorted(p.name for p in cache.iterdir()) == ['test.npz', 'train.npz']
  assert load() == []  # every split from the cache
  # Stale: a record file changed since the cache was written (here, only its time).
  (records_file,) = version_dir.glob('cifar10-train.array_record*')
  mtime = records_file.stat().st_mtime_ns + 10**9
  os.utime(records_file, ns=(mtime, mtime))
  assert load() == ['train']
  assert load() == []
  # Damaged: one byte of the cached images changed (the zip's CRC-32 no longer matches).
  path = cache / 'train.npz'
  damaged = bytearray(path.read_bytes())
  damaged[len(damaged) // 2] ^= 0xFF
  path.write_bytes(bytes(damaged))
  with caplog.at_level(logging.WARNING):
    assert load() == ['train']
  assert f'The cache {path} is damaged' in caplog.text
  assert load() == []


def test_the_start_benchmark_times_both_starts(prepared_cifar10, monkeypatch, capsys):
  data_dir = str(prepared_cifar10[0])
  monkeypatch.setattr(sys, 'argv', ['data_start', f'--data_dir={data_dir}', '--rounds=1'])
  data_start.main()
  lines = capsys.readouterr().out.splitlines()
  assert re.fullmatch(r'round 1: first start \d+\.\d\d s, cached start \d+\.\d\d s', lines[0])
  assert lines[1].startswith(f'cifar10 in {data_dir}, median of 1: first start ')
  monkeypatch.setattr(sys, 'argv', ['data_start', f'--data_dir={data_dir}', '--name=cifar100'])
  with pytest.raises(SystemExit):
    data_start.main()
  assert 'cifar100 is not prepared as ArrayRecord in' in capsys.readouterr().err


def _offline(monkeypatch) -> list:
  """Makes every connection fail; returns the list of the addresses tried."""
  tried = []

  def unreachable(address, timeout=None):
    tried.append(address)
    raise OSError(101, 'Network is unreachable')

  monkeypatch.setattr(socket, 'create_connection', unreachable)
  return tried


def test_offline_fails_within_seconds_naming_the_archive_source(tmp_path, monkeypatch):
  tried = _offline(monkeypatch)
  start = time.perf_counter()
  with pytest.raises(UserError) as error:
    tfds_source.prepare(['cifar10'], str(tmp_path))
  assert time.perf_counter() - start < 5
  assert tried == [('www.cs.toronto.edu', 443)]
  message = str(error.value)
  for words in (
    'cifar10 is not prepared',
    'cannot be reached',
    'Network is unreachable',
    'cifar-10-binary.tar.gz',
    '--config.dataset.source=archive',
    '--config.dataset.data_dir',
  ):
    assert words in message, message


@pytest.mark.parametrize(
  'names, host',
  [
    (['cifar10_1'], 'github.com'),
    (['cifar10_corrupted/gaussian_noise_5', 'cifar10_corrupted/fog_1'], 'zenodo.org'),
  ],
)
def test_offline_a_test_set_without_an_archive_needs_the_network_once(
  names, host, tmp_path, monkeypatch
):
  tried = _offline(monkeypatch)
  with pytest.raises(UserError) as error:
    tfds_source.prepare(names, str(tmp_path))
  assert tried == [(host, 443)]  # the dataset's own download host
  message = str(error.value)
  family = names[0].split('/')[0]
  for words in (
    ', '.join(names),
    f'{host} cannot be reached',
    f'{family} has no archive source: it needs the network once',
    f'python -m resnet_jax.tfds_source {" ".join(names)} DIR',
    f'copy a prepared tfds data_dir from another machine: its {family}/ folder into {tmp_path}',
  ):
    assert words in message, message
  assert 'source=archive' not in message


def test_a_tfrecord_copy_is_refused_with_what_to_do(tmp_path):
  fake_cifar.write_cifar10(tmp_path / 'archive', form='parent')
  # tfds.load's default format, as an existing ~/tensorflow_datasets may hold it.
  script = f"""
from unittest import mock
import tensorflow_datasets as tfds
with mock.patch.object(tfds.download.DownloadManager, 'download_and_extract',
                       lambda self, url: {str(tmp_path / 'archive')!r}):
  tfds.builder('cifar10', data_dir={str(tmp_path / 'tfds')!r},
               file_format='tfrecord').download_and_prepare()
"""
  subprocess.run(
    [sys.executable, '-c', script],
    check=True,
    timeout=300,
    env={'CUDA_VISIBLE_DEVICES': '', 'PATH': ''},
    capture_output=True,
  )
  with pytest.raises(UserError, match='other format than ArrayRecord.*data_source cannot'):
    tfds_source.prepare(['cifar10'], str(tmp_path / 'tfds'))
