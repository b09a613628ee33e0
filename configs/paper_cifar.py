"""The recipe of He et al. 2015 (arXiv:1512.03385), Sec. 4.2, shared by resnet20.py .. resnet110.py.

Batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k steps,
stop at 64k steps (about 164 epochs of the 50k train images), 4-pixel pad + crop and flip.
"""
import ml_collections

from configs import default


def get_config(model_name: str) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = model_name
  config.model.shortcut = 'A'
  config.batch_size = 128
  config.num_train_steps = 64_000
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = 'piecewise'
  config.schedule.boundaries = (32_000, 48_000)
  config.schedule.decay_factor = 0.1
  config.log_every_steps = 100
  config.eval_every_steps = 2_000
  config.checkpoint_every_steps = 2_000
  return config
