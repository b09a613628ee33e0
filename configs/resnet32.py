"""ResNet-32 on CIFAR-10, the paper's recipe.

Published test error: 7.51% (Table 6) of He et al. 2015.

  python launch.py --config=configs/resnet32.py
"""

import ml_collections

from configs import paper_cifar


def get_config() -> ml_collections.ConfigDict:
  return paper_cifar.get_config('resnet32')
