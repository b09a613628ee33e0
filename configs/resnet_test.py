"""A tiny run for tests and smoke checks: the resnet_test net, a few steps, everything on.

python launch.py --config=configs/resnet_test.py --config.dataset.data_dir=DIR
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.name = 'resnet_test'
  config.dataset.source = 'archive'  # tests write small archives; no download
  config.batch_size = 8
  config.num_train_steps = 8
  config.steps_per_call = 2
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.eval_every_epochs = 0.0
  config.checkpoint_every_steps = 4
  config.checkpoint_every_epochs = 0.0
  config.keep_checkpoints = 2
  config.eval.batch_size = 8
  config.compilation_cache_dir = ''  # tests choose their own cache, never the user's
  return config
