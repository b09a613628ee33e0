"""The archive source and data.load on tiny archives written in the official layout."""

import tarfile

import numpy as np
import pytest

from resnet_jax import archive_source, cifar, data
from resnet_jax.errors import UserError
from tests import fake_cifar

_WRITERS = {'cifar10': fake_cifar.write_cifar10, 'cifar100': fake_cifar.write_cifar100}


def _rows(images: np.ndarray) -> list[bytes]:
  # Random 3072-byte images never collide, so their bytes identify examples.
  return [image.tobytes() for image in images]


@pytest.mark.parametrize('form', fake_cifar.FORMS)
@pytest.mark.parametrize('name', cifar.DATASET_NAMES)
def test_round_trip(tmp_path, name, form):
  fake = _WRITERS[name](tmp_path, form=form)
  got = data.load(name, 'archive', str(tmp_path), validation_size=0)
  assert got.num_classes == cifar.NUM_CLASSES[name]
  assert got.validation is None
  for split, images, labels in [
    (got.train, fake.train_images, fake.train_labels),
    (got.test, fake.test_images, fake.test_labels),
  ]:
    assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
    assert split.images.flags.c_contiguous
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


def test_home_is_expanded(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  fake = fake_cifar.write_cifar10(tmp_path / 'cifar', form='parent')
  train, _ = archive_source.load('cifar10', '~/cifar')
  np.testing.assert_array_equal(train.labels, fake.train_labels)


def test_colour_planes_become_nhwc(tmp_path):
  fake_cifar.write_cifar10(tmp_path)
  red = np.arange(1024, dtype=np.uint8).reshape(32, 32)  # distinct along rows and columns
  green, blue = 255 - red, np.full((32, 32), 7, np.uint8)
  record = bytes([3]) + red.tobytes() + green.tobytes() + blue.tobytes()
  (tmp_path / 'test_batch.bin').write_bytes(record)
  _, test = archive_source.load('cifar10', str(tmp_path))
  assert test.images.shape == (1, 32, 32, 3) and test.labels.tolist() == [3]
  np.testing.assert_array_equal(test.images[0], np.stack([red, green, blue], -1))


def test_validation_split(tmp_path):
  fake = fake_cifar.write_cifar10(tmp_path)
  n = len(fake.train_labels)
  first = data.load('cifar10', 'archive', str(tmp_path), validation_size=30)
  assert len(first.train.labels) == n - 30 and len(first.validation.labels) == 30
  index = {row: i for i, row in enumerate(_rows(fake.train_images))}
  kept = [index[row] for row in _rows(first.train.images)]
  held = [index[row] for row in _rows(first.validation.images)]
  # The documented fixed choice, each part in the official order.
  assert held == sorted(np.random.default_rng(0).permutation(n)[:30])
  assert kept == sorted(set(range(n)) - set(held))
  np.testing.assert_array_equal(first.train.labels, fake.train_labels[kept])
  np.testing.assert_array_equal(first.validation.labels, fake.train_labels[held])
  np.testing.assert_array_equal(first.test.images, fake.test_images)
  again = data.load('cifar10', 'archive', str(tmp_path), validation_size=30)
  np.testing.assert_array_equal(again.validation.images, first.validation.images)


@pytest.mark.parametrize('name', cifar.DATASET_NAMES)
@pytest.mark.parametrize('folder', ['missing', 'empty'])
def test_no_dataset_in_folder(tmp_path, name, folder):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError) as e:
    data.load(name, 'archive', str(tmp_path / folder), 0)
  tarball = 'cifar-10-binary.tar.gz' if name == 'cifar10' else 'cifar-100-binary.tar.gz'
  for words in [
    folder,
    'the folder of the .bin files',
    'its parent',
    tarball,
    f'https://www.cs.toronto.edu/~kriz/{tarball}',
    '--config.dataset.data_dir',
  ]:
    assert words in str(e.value)


@pytest.mark.parametrize('form', ['bins', 'parent'])
def test_missing_file(tmp_path, form):
  fake_cifar.write_cifar10(tmp_path, form=form)
  next(tmp_path.rglob('data_batch_3.bin')).unlink()
  with pytest.raises(UserError, match='data_batch_3.bin.*does not exist'):
    archive_source.load('cifar10', str(tmp_path))


def test_missing_tarball_member(tmp_path):
  fake_cifar.write_cifar100(tmp_path / 'bins', form='parent')
  with tarfile.open(tmp_path / 'cifar-100-binary.tar.gz', 'w:gz') as archive:
    archive.add(tmp_path / 'bins/cifar-100-binary/test.bin', 'cifar-100-binary/test.bin')
  with pytest.raises(UserError, match='cifar-100-binary/train.bin.*Download'):
    archive_source.load('cifar100', str(tmp_path))


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_damaged_tarball(tmp_path, damage):
  fake_cifar.write_cifar10(tmp_path, form='tarball')
  path = tmp_path / 'cifar-10-binary.tar.gz'
  contents = path.read_bytes()
  if damage == 'garbage':
    path.write_bytes(b'not a tarball')
  else:
    path.write_bytes(contents[: len(contents) // 2])
  with pytest.raises(UserError, match='cifar-10-binary.tar.gz.*damaged.*Download'):
    archive_source.load('cifar10', str(tmp_path))


@pytest.mark.parametrize('size', [0, 3073 + 1])
def test_partial_record(tmp_path, size):
  fake_cifar.write_cifar10(tmp_path)
  path = tmp_path / 'data_batch_2.bin'
  path.write_bytes(path.read_bytes()[:size])
  with pytest.raises(UserError, match=rf'data_batch_2.bin holds {size} bytes.*3073-byte'):
    archive_source.load('cifar10', str(tmp_path))


@pytest.mark.parametrize(
  'name, file, offset, label',
  [('cifar10', 'test_batch.bin', 0, 10), ('cifar100', 'train.bin', 1, 100)],
)
def test_label_out_of_range(tmp_path, name, file, offset, label):
  _WRITERS[name](tmp_path)
  path = tmp_path / file
  contents = bytearray(path.read_bytes())
  record_bytes = len(contents) // (20 if name == 'cifar10' else 40)
  contents[record_bytes + offset] = label  # the label of record 1
  path.write_bytes(contents)
  message = rf'{file}: record 1 has label {label}.*dataset.name'
  with pytest.raises(UserError, match=message):
    archive_source.load(name, str(tmp_path))


def test_coarse_label_is_ignored(tmp_path):
  fake = fake_cifar.write_cifar100(tmp_path)
  path = tmp_path / 'test.bin'
  contents = bytearray(path.read_bytes())
  contents[0] = 255  # a coarse label no file holds: it must not be read
  path.write_bytes(contents)
  _, test = archive_source.load('cifar100', str(tmp_path))
  np.testing.assert_array_equal(test.labels, fake.test_labels)


def test_channel_statistics_cover_both_datasets():
  for table in (cifar.CHANNEL_MEAN, cifar.CHANNEL_STD):
    assert set(table) == set(cifar.DATASET_NAMES)
    assert all(len(v) == 3 and all(0 < x < 255 for x in v) for v in table.values())
