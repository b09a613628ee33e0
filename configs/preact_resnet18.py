"""Pre-activation ResNet-18 as kuangliu/pytorch-cifar trains it (its README: 95.11% test accuracy,
the best epoch of one run).

200 epochs, batch 128, SGD lr 0.1 momentum 0.9, weight decay 5e-4, cosine decay, crop + flip:
the defaults of default.py (kuangliu's recipe, as configs/resnet18.py), with this model.

  python launch.py --config=configs/preact_resnet18.py
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = 'preact_resnet18'
  return config
