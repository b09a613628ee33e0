"""CIFAR ResNet-18 with cutout, DeVries & Taylor's recipe (arXiv:1708.04552; uoguelph-mlrg/Cutout).

Reported: 3.99% test error on CIFAR-10 (96.01% accuracy), the mean of 5 runs (the repository's
README; the paper's Table 1). Their train.py tests after every epoch and keeps no best epoch, so
each run's number is its last epoch's, as ours are.

Their recipe, as their train.py runs it: ResNet-18 (their model/resnet.py, kuangliu's CIFAR
ResNet-18, which ours ports), 200 epochs, batch 128, SGD lr 0.1, Nesterov momentum 0.9, weight
decay 5e-4 on every parameter, lr x 0.2 after epochs 60, 120 and 160, random crop from a 4-pixel
zero pad and horizontal flip, then cutout of one 16 x 16 square per image after normalisation.

Where this config differs: the channel statistics are resnet_jax.cifar's, not their rounded
(125.3, 123.0, 113.9) / (63.0, 62.1, 66.7); their scheduler.step(epoch) at each epoch's end drops
the rate one epoch after each boundary (from epoch 61, 121, 161), ours at the boundary the paper
states.

  python launch.py --config=configs/resnet18_cutout.py
"""

import ml_collections

from configs import resnet18


def get_config() -> ml_collections.ConfigDict:
  config = resnet18.get_config()
  config.optimizer.nesterov = True
  config.schedule.name = 'piecewise'
  config.schedule.boundary_epochs = (60, 120, 160)
  config.schedule.decay_factor = 0.2
  config.augment.cutout_size = 16
  return config
