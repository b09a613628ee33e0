"""ResNet-20 on CIFAR-10 in about an hour on a 2-core CPU: the paper's optimiser, 12 epochs, cosine.

Batch 128, SGD momentum 0.9, lr 0.1, weight decay 1e-4 on every parameter (He et al. 2015,
Sec. 4.2), crop + flip, no warm-up. The paper's step schedule needs 64k steps (164 epochs); here
the rate decays by a cosine to 0 over 12 epochs instead, because a cosine anneals a run of any
length to the end where a step schedule cut short would stop at a high rate. 12 epochs of 390
steps fit about an hour of this project's 2 CPU cores; the measured runs are in docs/results.md.

  python launch.py --config=configs/resnet20_short.py --config.dataset.source=archive \
      --config.dataset.data_dir=/work/data_cifar10
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.num_epochs = 12
  config.optimizer.weight_decay = 1e-4
  config.log_every_steps = 30
  return config
