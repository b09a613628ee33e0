"""The CIFAR-10 recipe of He et al. 2015 (arXiv:1512.03385), Sec. 4.2, for any of the paper's nets.

Batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k steps, stop at
64k steps (about 164 epochs of the 50k train images), 4-pixel pad + crop and flip; each net with
its published shortcut (option A; the plain nets have none). The argument names the net:

  python launch.py --config=configs/paper_cifar.py:resnet56
  python launch.py --config=configs/paper_cifar.py:plain20       # the paper's plain baselines

resnet20.py .. resnet110.py are this recipe for one depth each, with the paper's test error.
"""

import ml_collections

from configs import default


def get_config(model_name: str = 'resnet20') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = model_name
  config.num_train_steps = 64_000
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = 'piecewise'
  config.schedule.boundaries = (32_000, 48_000)
  return config
