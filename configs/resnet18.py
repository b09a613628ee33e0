"""CIFAR ResNet-18 as kuangliu/pytorch-cifar trains it (reported there: 93.02% test accuracy).

200 epochs, batch 128, SGD lr 0.1 momentum 0.9, weight decay 5e-4, cosine decay, crop + flip.

  python launch.py --config=configs/resnet18.py
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = 'resnet18'
  config.dataset.name = 'cifar10'
  config.batch_size = 128
  config.num_epochs = 200
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = 'cosine'
  # 50,000 // 128 = 390 steps an epoch: log 3 times an epoch, evaluate every epoch,
  # checkpoint every 5 epochs. One step per call: 390 is no multiple of 4, and 4 steps a call
  # were no faster for ResNet-18 on the CPU (benchmarks/RESULTS.md).
  config.steps_per_call = 1
  config.log_every_steps = 130
  config.eval_every_steps = 390
  config.checkpoint_every_steps = 1950
  return config
