"""CIFAR ResNet-18 on CIFAR-100 with kuangliu's CIFAR-10 recipe (200 epochs, cosine, wd 5e-4).

Not a published recipe for CIFAR-100, but the usual baseline; not yet measured here.

  python launch.py --config=configs/resnet18_cifar100.py
"""

import ml_collections

from configs import resnet18


def get_config() -> ml_collections.ConfigDict:
  config = resnet18.get_config()
  config.dataset.name = 'cifar100'
  return config
