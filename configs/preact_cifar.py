"""The CIFAR recipe of He et al. 2016 (Identity Mappings in Deep Residual Networks,
arXiv:1603.05027, Sec. 4 and Table 3) for its bottleneck nets; the argument names the net.

Batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k steps, stop
at 64k steps (the recipe of He et al. 2015), 4-pixel pad + crop and flip; lr 0.01 for the first
400 steps (the warm-up of He et al. 2015's ResNet-110, "until the training error is below 80%").
Published test error, the final epoch, as the paper's Table 3 gives it and
szagoruyko/wide-residual-networks' README quotes it (median of 5 runs):

  preact_resnet164   1.7M params   CIFAR-10 5.46%   CIFAR-100 24.33%
  preact_resnet1001  10.2M params  CIFAR-10 4.92%   CIFAR-100 22.71%   (the lua builds 10.3M)

preact_resnet1001 runs its blocks as scanned stacks (model.scan_blocks: one compiled block per
stage instead of 333 in all), for a GPU: XLA's CPU backend runs a scanned step far slower than
the unrolled one, as it does a scan of whole train steps. benchmarks/deep_compile.py measures
compile time, step time and memory of both forms, and of scan + model.remat.

  python launch.py --config=configs/preact_cifar.py:preact_resnet164
  python launch.py --config=configs/preact_cifar.py:preact_resnet1001
  python launch.py --config=configs/preact_cifar.py:preact_resnet164 --config.dataset.name=cifar100
"""

import ml_collections

from configs import paper_cifar


def get_config(model_name: str = 'preact_resnet164') -> ml_collections.ConfigDict:
  config = paper_cifar.get_config(model_name)
  config.schedule.warmup_steps = 400
  config.schedule.warmup_mode = 'constant'
  config.model.scan_blocks = model_name == 'preact_resnet1001'
  return config
