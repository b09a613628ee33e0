"""A dataset as uint8 arrays on the host, from its source, with the validation split held out.

Sources: 'archive' (archive_source.py, the official binary files) and 'tfds' (tfds_source.py,
tensorflow-datasets, imported only when used). Both give the official order, so both give the same
arrays and the same validation split.
"""

import numpy as np

from resnet_jax import archive_source, cifar

SOURCES = ('tfds', 'archive')


def _hold_out(train: cifar.Split, validation_size: int) -> tuple[cifar.Split, cifar.Split | None]:
  if not validation_size:
    return train, None
  # A fixed generator, not the run's seed: every seed of a sweep validates on the same examples.
  order = np.random.default_rng(0).permutation(len(train.labels))
  kept, held = np.sort(order[validation_size:]), np.sort(order[:validation_size])
  return (
    cifar.Split(train.images[kept], train.labels[kept]),
    cifar.Split(train.images[held], train.labels[held]),
  )


def load(name: str, source: str, data_dir: str, validation_size: int) -> cifar.CifarData:
  """Loads a (validated) dataset and holds `validation_size` train examples out as validation."""
  if source == 'tfds':
    from resnet_jax import tfds_source  # tensorflow_datasets only for this source

    train, test = tfds_source.load(name, data_dir)
  else:
    train, test = archive_source.load(name, data_dir)
  train, validation = _hold_out(train, validation_size)
  return cifar.CifarData(train, test, validation, cifar.NUM_CLASSES[name])
