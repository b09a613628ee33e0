"""CIFAR ResNet-18 for one GPU, time to accuracy: 30 epochs at batch 512 in bfloat16.

Nesterov SGD at lr 0.4 (0.1 per 128 examples, scaled linearly), 2 epochs of linear warm-up then
cosine to 0, weight decay 5e-4 (BatchNorm and biases not decayed), label smoothing 0.1, crop +
flip. Result: see the README's results table, which says on which card and data it was measured.

  python launch.py --config=configs/resnet18_fast.py
"""
import ml_collections

from configs import default

_STEPS_PER_EPOCH = 50_000 // 512  # 97: each epoch drops the last 336 images of its permutation


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = 'resnet18'
  config.model.dtype = 'bfloat16'
  config.dataset.name = 'cifar10'
  config.batch_size = 512
  config.num_epochs = 30
  config.optimizer.learning_rate = 0.4
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.decay_bn_and_bias = False
  config.schedule.name = 'cosine'
  config.schedule.warmup_steps = 2 * _STEPS_PER_EPOCH
  config.schedule.warmup_mode = 'linear'
  config.label_smoothing = 0.1
  # 97 steps an epoch is prime, so one step a call; at batch 512 a GPU step is long enough
  # that the dispatch of each call does not show.
  config.steps_per_call = 1
  config.log_every_steps = _STEPS_PER_EPOCH
  config.eval_every_steps = _STEPS_PER_EPOCH
  config.checkpoint_every_steps = 5 * _STEPS_PER_EPOCH
  return config
