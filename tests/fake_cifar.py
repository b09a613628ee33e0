"""Writes tiny CIFAR archives in the official binary layout, for tests.

    fake = write_cifar10(tmp_path, form='tarball')
    train, test = archive_source.load('cifar10', str(tmp_path))
    np.testing.assert_array_equal(train.images, fake.train_images)

Every form is read with data_dir=directory.
"""

import dataclasses
import io
import pathlib
import tarfile

import numpy as np

FORMS = ('bins', 'parent', 'tarball')


@dataclasses.dataclass(frozen=True)
class FakeCifar:
  """What the loader must return, in the official order."""

  train_images: np.ndarray  # (N, 32, 32, 3) uint8
  train_labels: np.ndarray  # (N,) int32
  test_images: np.ndarray
  test_labels: np.ndarray


def _examples(
  rng: np.random.Generator, n: int, num_classes: int, learnable: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  if not learnable:
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), labels
  # Each class its own colour under noise: a tiny net learns it in a few dozen steps.
  colours = np.random.default_rng(1234).integers(40, 216, (num_classes, 1, 1, 3))
  noise = rng.integers(-40, 41, (n, 32, 32, 3))
  return np.clip(colours[labels] + noise, 0, 255).astype(np.uint8), labels


def _records(label_bytes: list[np.ndarray], images: np.ndarray) -> bytes:
  # Pixels go to disk as the R, G and B planes, each 32x32 row-major.
  planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  labels = np.stack(label_bytes, axis=1).astype(np.uint8)
  return np.concatenate([labels, planes], axis=1).tobytes()


def _label_names(prefix: str, count: int) -> bytes:
  # The official archives carry these; tfds's builders read the class names from them.
  return ''.join(f'{prefix}_{i}\n' for i in range(count)).encode()


def _write(
  directory: pathlib.Path,
  folder: str,
  tarball: str,
  files: dict[str, bytes],
  form: str,
) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  if form == 'bins':
    for name, contents in files.items():
      (directory / name).write_bytes(contents)
  elif form == 'parent':
    _write(directory / folder, folder, tarball, files, 'bins')
  elif form == 'tarball':
    with tarfile.open(directory / tarball, 'w:gz') as archive:
      for name, contents in files.items():
        info = tarfile.TarInfo(f'{folder}/{name}')
        info.size = len(contents)
        archive.addfile(info, io.BytesIO(contents))
  else:
    raise ValueError(f'form is {form!r}; expected one of {FORMS}')


def write_cifar10(
  directory: pathlib.Path,
  records_per_batch: int = 20,
  test_records: int = 20,
  seed: int = 0,
  form: str = 'bins',
  learnable: bool = False,
) -> FakeCifar:
  """Writes data_batch_1..5.bin and test_batch.bin with random examples.

  learnable: images coloured by class, so training really learns; otherwise pure noise.
  """
  rng = np.random.default_rng(seed)
  train_images, train_labels = _examples(rng, 5 * records_per_batch, 10, learnable)
  test_images, test_labels = _examples(rng, test_records, 10, learnable)
  files = {}
  for i in range(5):
    batch = slice(i * records_per_batch, (i + 1) * records_per_batch)
    files[f'data_batch_{i + 1}.bin'] = _records([train_labels[batch]], train_images[batch])
  files['test_batch.bin'] = _records([test_labels], test_images)
  files['batches.meta.txt'] = _label_names('class', 10)
  _write(directory, 'cifar-10-batches-bin', 'cifar-10-binary.tar.gz', files, form)
  return FakeCifar(train_images, train_labels, test_images, test_labels)


def write_cifar100(
  directory: pathlib.Path,
  train_records: int = 40,
  test_records: int = 20,
  seed: int = 0,
  form: str = 'bins',
) -> FakeCifar:
  """Writes train.bin and test.bin; each record also carries a random coarse label."""
  rng = np.random.default_rng(seed)
  train_images, train_labels = _examples(rng, train_records, 100)
  test_images, test_labels = _examples(rng, test_records, 100)
  files = {
    'train.bin': _records([rng.integers(0, 20, train_records), train_labels], train_images),
    'test.bin': _records([rng.integers(0, 20, test_records), test_labels], test_images),
    'coarse_label_names.txt': _label_names('superclass', 20),
    'fine_label_names.txt': _label_names('class', 100),
  }
  _write(directory, 'cifar-100-binary', 'cifar-100-binary.tar.gz', files, form)
  return FakeCifar(train_images, train_labels, test_images, test_labels)


def write_cifar10_1(
  directory: pathlib.Path, images: np.ndarray, labels: np.ndarray, version: str = 'v4'
) -> None:
  """CIFAR-10.1's two .npy files, as its GitHub repository serves them (tfds downloads both)."""
  directory.mkdir(parents=True, exist_ok=True)
  np.save(directory / f'cifar10.1_{version}_data.npy', images)
  np.save(directory / f'cifar10.1_{version}_labels.npy', labels.astype(np.int64))


def write_cifar10_c(
  directory: pathlib.Path, severities: dict[str, np.ndarray], labels: np.ndarray
) -> None:
  """CIFAR-10-C as its tarball extracts: CIFAR-10-C/<file>.npy and labels.npy.

  severities: the archive's file name (gaussian_noise, glass_blur, ...) -> (5, n, 32, 32, 3)
  uint8 images, severity 1 first; each file stacks them, and labels.npy the n labels 5 times.
  Only the files given are written: tfds reads just the one of the config it prepares.
  """
  folder = directory / 'CIFAR-10-C'
  folder.mkdir(parents=True, exist_ok=True)
  for name, images in severities.items():
    np.save(folder / f'{name}.npy', images.reshape(-1, 32, 32, 3))
  np.save(folder / 'labels.npy', np.tile(labels, 5).astype(np.uint8))
