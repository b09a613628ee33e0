"""CIFAR-10 and CIFAR-100: names, sizes, channel statistics, and the Split every source returns.

Only numpy and the standard library: everything that reads a dataset imports this, and it
imports nothing of the project.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, 32, 32, 3) uint8, NHWC
  labels: np.ndarray  # (N,) int32


@dataclasses.dataclass(frozen=True)
class CifarData:
  train: Split
  test: Split
  validation: Split | None  # None when validation_size == 0
  num_classes: int


DATASET_NAMES = ('cifar10', 'cifar100')
NUM_CLASSES = {'cifar10': 10, 'cifar100': 100}
TRAIN_EXAMPLES = {'cifar10': 50_000, 'cifar100': 50_000}
# Per-channel statistics on the 0-255 scale, the values most CIFAR recipes publish.
CHANNEL_MEAN = {
  'cifar10': (125.3, 123.0, 113.9),
  'cifar100': (129.3, 124.1, 112.4),
}
CHANNEL_STD = {
  'cifar10': (63.0, 62.1, 66.7),
  'cifar100': (68.2, 65.4, 70.4),
}
