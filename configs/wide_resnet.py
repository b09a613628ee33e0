"""Wide ResNets with the recipe of Zagoruyko and Komodakis 2016 (Wide Residual Networks,
arXiv:1605.07146, Sec. 3): batch 128, SGD lr 0.1 nesterov momentum 0.9, weight decay 5e-4, lr
divided by 5 at epochs 60, 120 and 160, 200 epochs, pad + crop and flip, meanstd normalisation.
The argument names the net; --config.model.dropout_rate=0.3 is the paper's dropout.

Published test error, the final epoch (szagoruyko/wide-residual-networks README, meanstd
normalisation, median of 5 runs; wrn16_8 from the paper's Table 5, meanstd, not in the README):

  wrn28_10 (36.5M params)        CIFAR-10 4.00%   CIFAR-100 19.25%
  wrn28_10, dropout_rate=0.3     CIFAR-10 3.89%   CIFAR-100 18.85%
  wrn16_8 (11.0M params)         CIFAR-10 4.27%   CIFAR-100 20.43%

  python launch.py --config=configs/wide_resnet.py:wrn28_10
  python launch.py --config=configs/wide_resnet.py:wrn28_10 --config.model.dropout_rate=0.3
  python launch.py --config=configs/wide_resnet.py:wrn16_8
"""

import ml_collections

from configs import default


def get_config(model_name: str = 'wrn28_10') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = model_name
  config.optimizer.nesterov = True
  config.schedule.name = 'piecewise'
  config.schedule.boundary_epochs = (60, 120, 160)
  config.schedule.decay_factor = 0.2
  return config
