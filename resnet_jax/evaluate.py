"""--mode=eval: restore a checkpoint of a run and evaluate it on the whole test set."""
import json
import os

import ml_collections
from absl import logging

from resnet_jax import checkpoint, distributed, metrics, train
from resnet_jax.errors import UserError


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores config.eval.step (-1: the latest), evaluates every split, writes eval_<step>.json."""
  if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
    raise UserError(f'No checkpoints in {workdir}: train first (--mode=train) or pass the '
                    '--workdir of a trained run.')
  manager = checkpoint.create_manager(workdir, create=False)
  steps = manager.all_steps()
  step = config.eval.step if config.eval.step >= 0 else (max(steps) if steps else None)
  if step is None or step not in steps:
    raise UserError(f'No checkpoint of step {config.eval.step if step is None else step} in '
                    f'{checkpoint.checkpoint_dir(workdir)}; the saved steps are '
                    f'{sorted(steps) or "none"}.')
  run = train.setup(config)
  state = checkpoint.restore(manager, step, run.state)
  manager.close()
  results = {'step': step}
  for name, split in run.eval_sets.items():
    results[name] = run.eval_fn(state, split)
    logging.info(metrics.eval_line(name, step, results[name]))
  if distributed.is_writer():
    path = os.path.join(workdir, f'eval_{step}.json')
    with open(path, 'w') as f:
      json.dump(results, f, indent=2)
      f.write('\n')
    logging.info('Wrote %s.', path)
  return results
