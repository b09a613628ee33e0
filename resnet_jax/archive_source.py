"""The 'archive' source: the official "binary version" files of CIFAR-10 and CIFAR-100.

https://www.cs.toronto.edu/~kriz/cifar.html: each record is the label byte(s) followed by 3072
pixel bytes, the red, green and blue 32x32 planes in turn. Read from the extracted files or from
the .tar.gz in place, in the official order. For offline machines: no download, no TensorFlow.
"""

import dataclasses
import pathlib
import tarfile

import numpy as np

from resnet_jax import cifar
from resnet_jax.errors import UserError

_URL = 'https://www.cs.toronto.edu/~kriz/'
_PIXEL_BYTES = 32 * 32 * 3


@dataclasses.dataclass(frozen=True)
class _Layout:
  folder: str  # what the tarball extracts to
  tarball: str
  label_bytes: int  # CIFAR-100 stores (coarse, fine); the fine label is the last byte
  train_files: tuple[str, ...]
  test_file: str


_LAYOUTS = {
  'cifar10': _Layout(
    folder='cifar-10-batches-bin',
    tarball='cifar-10-binary.tar.gz',
    label_bytes=1,
    train_files=tuple(f'data_batch_{i}.bin' for i in range(1, 6)),
    test_file='test_batch.bin',
  ),
  'cifar100': _Layout(
    folder='cifar-100-binary',
    tarball='cifar-100-binary.tar.gz',
    label_bytes=2,
    train_files=('train.bin',),
    test_file='test.bin',
  ),
}


def tarball(name: str) -> str:
  """The file name of the official archive of `name`."""
  return _LAYOUTS[name].tarball


def _parse(data: bytes, where: str, name: str) -> cifar.Split:
  """Decodes the records of one .bin file."""
  layout = _LAYOUTS[name]
  record_bytes = layout.label_bytes + _PIXEL_BYTES
  if not data or len(data) % record_bytes:
    raise UserError(
      f'{where} holds {len(data)} bytes, which is not a whole, non-zero number '
      f'of {record_bytes}-byte {name} records: the file is truncated or not '
      f'from {layout.tarball}. Download it again from {_URL}{layout.tarball}.'
    )
  records = np.frombuffer(data, np.uint8).reshape(-1, record_bytes)
  labels = records[:, layout.label_bytes - 1].astype(np.int32)
  bad = np.flatnonzero(labels >= cifar.NUM_CLASSES[name])
  if bad.size:
    raise UserError(
      f'{where}: record {bad[0]} has label {labels[bad[0]]}, but {name} has '
      f'{cifar.NUM_CLASSES[name]} classes. Is it a file of the other dataset? Check '
      f'dataset.name, or download {_URL}{layout.tarball} again.'
    )
  images = records[:, layout.label_bytes :].reshape(-1, 3, 32, 32)
  # Contiguous NHWC: np.concatenate would otherwise keep the planar memory order.
  return cifar.Split(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels)


def _read_folder(folder: pathlib.Path, names: list[str]) -> list[tuple[str, bytes]]:
  """Returns (where, contents) of each named file, in order."""
  files = []
  for name in names:
    path = folder / name
    if not path.is_file():
      raise UserError(
        f'Looked for {path}, but it does not exist. The folder must hold all '
        f'of {", ".join(names)}; extract the official archive again.'
      )
    files.append((str(path), path.read_bytes()))
  return files


def _read_tarball(tarball: pathlib.Path, folder: str, names: list[str]) -> list[tuple[str, bytes]]:
  """Returns (where, contents) of each named member, in order."""
  wanted = [f'{folder}/{name}' for name in names]
  found = {}
  try:
    with tarfile.open(tarball, 'r:gz') as archive:
      # One pass in archive order: seeking back in a gzip stream decompresses it again.
      for member in archive:
        if member.isfile() and member.name in wanted:
          found[member.name] = archive.extractfile(member).read()
  except (tarfile.TarError, EOFError, OSError) as e:
    raise UserError(
      f'Could not read {tarball} as a .tar.gz ({e}): it is damaged or '
      f'truncated. Download it again from {_URL}{tarball.name}.'
    ) from e
  missing = [m for m in wanted if m not in found]
  if missing:
    raise UserError(
      f'Looked for {", ".join(missing)} inside {tarball}, but found no such '
      f'member. Download the official archive again from {_URL}{tarball.name}.'
    )
  return [(f'{tarball}:{m}', found[m]) for m in wanted]


def _concat(parts: list[cifar.Split]) -> cifar.Split:
  return cifar.Split(
    np.concatenate([p.images for p in parts]),
    np.concatenate([p.labels for p in parts]),
  )


def load(name: str, data_dir: str) -> tuple[cifar.Split, cifar.Split]:
  """Reads (train, test) of a dataset, each in the official record order.

  Args:
    name: 'cifar10' or 'cifar100'.
    data_dir: the folder of the .bin files, its parent, or a folder holding the
      official .tar.gz (read in place, nothing is extracted).

  Returns:
    The train and test splits.
  """
  layout = _LAYOUTS[name]
  names = [*layout.train_files, layout.test_file]
  root = pathlib.Path(data_dir).expanduser()
  # Extracted files win over a tarball beside them: they are faster to read.
  if any((root / n).is_file() for n in names):
    files = _read_folder(root, names)
  elif (root / layout.folder).is_dir():
    files = _read_folder(root / layout.folder, names)
  elif (root / layout.tarball).is_file():
    files = _read_tarball(root / layout.tarball, layout.folder, names)
  else:
    found = 'that folder holds none of these' if root.is_dir() else 'no folder is there'
    raise UserError(
      f'Looked for {name} in dataset.data_dir={str(root)!r}, but {found}. '
      f'It must be one of:\n'
      f'  the folder of the .bin files ({", ".join(names)});\n'
      f'  its parent, holding {layout.folder}/;\n'
      f'  a folder holding {layout.tarball}.\n'
      f'Download {_URL}{layout.tarball} and set '
      f'--config.dataset.data_dir=<that folder>.'
    )
  splits = [_parse(data, where, name) for where, data in files]
  return _concat(splits[:-1]), _concat(splits[-1:])
