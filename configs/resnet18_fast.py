"""CIFAR ResNet-18 for one GPU, time to accuracy: 30 epochs at batch 512 in bfloat16.

Nesterov SGD at lr 0.4 (0.1 per 128 examples, scaled linearly), 2 epochs of linear warm-up then
cosine to 0, weight decay 5e-4 (BatchNorm and biases not decayed), label smoothing 0.1, crop +
flip. Result: see the README's results table, which says on which card and data it was measured.

  python launch.py --config=configs/resnet18_fast.py
"""

import ml_collections

from configs import resnet18


def get_config() -> ml_collections.ConfigDict:
  config = resnet18.get_config()
  config.model.dtype = 'bfloat16'
  config.batch_size = 512
  config.num_epochs = 30
  config.optimizer.learning_rate = 0.4
  config.optimizer.nesterov = True
  config.optimizer.decay_bn_and_bias = False
  config.schedule.warmup_epochs = 2.0
  config.label_smoothing = 0.1
  # One step a call, as in the measured run: at batch 512 a GPU step is long enough that the
  # dispatch of each call does not show.
  config.steps_per_call = 1
  config.log_every_steps = 0
  config.log_every_epochs = 1.0
  config.checkpoint_every_epochs = 5.0
  return config
