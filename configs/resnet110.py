"""ResNet-110 on CIFAR-10, the paper's recipe. Published test error: 6.43% best, 6.61% +- 0.16
mean of 5 runs (He et al. 2015, Table 6).

The paper warms up at lr 0.01 until the training error is below 80% (about 400 steps), then
returns to 0.1; here that is a constant warm-up of 400 steps at 0.1 x the base rate.

  python launch.py --config=configs/resnet110.py
"""

import ml_collections

from configs import paper_cifar


def get_config() -> ml_collections.ConfigDict:
  config = paper_cifar.get_config('resnet110')
  config.schedule.warmup_steps = 400
  config.schedule.warmup_mode = 'constant'
  return config
