"""The entry point: train (or resume) a run, evaluate its checkpoint, or export it.

  python launch.py --config=configs/resnet18.py                  # --workdir: runs/resnet18
  python launch.py --config=configs/resnet18.py --mode=eval
  python launch.py --config=configs/resnet18.py --mode=export    # weights for PyTorch and flax
  python launch.py --config=configs/resnet20.py --config.batch_size=256 --workdir=/mnt/runs/r20

Several hosts: run the same command on every host (docs/scaling-out.md); JAX's runtime joins
them when SLURM, Open MPI or a Cloud TPU pod slice announces the processes, or when given
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I.

Mistakes a user can fix (bad config values, missing data, no checkpoint) end with a one-paragraph
message and exit status 2, without a traceback; a NaN or infinite loss with 3; a run stopped by
SIGTERM or SIGINT, after saving a checkpoint, with 75.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from resnet_jax import console

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'A config file from configs/.', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Checkpoints, metrics and logs. Default: runs/<config file name>.'
)
_MODE = flags.DEFINE_enum(
  'mode',
  'train',
  ['train', 'eval', 'export'],
  'train: train or resume; eval: evaluate a checkpoint of the workdir; export: write one for '
  'PyTorch and flax to workdir/export/<step>/.',
)

_DISTRIBUTED = flags.DEFINE_enum(
  'distributed',
  'auto',
  ['auto', 'on', 'off'],
  'auto: join several processes when the platform announces them (SLURM, Open MPI, Cloud TPU '
  'under GKE) or the three flags below are given; on: always (JAX detects what is not given); '
  'off: one process.',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, "Process 0's host:port, reachable from every process."
)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'How many processes take part.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index, 0 to N-1.")

USER_ERROR_EXIT = 2
NON_FINITE_EXIT = 3
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: saved and stopped on request; run the same command again


def _fail(message: str, code: int = USER_ERROR_EXIT) -> None:
  print(f'Error: {message}', file=sys.stderr)
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, but an unknown --config.field is a one-line error, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    given = [a for a in argv[1:] if a.startswith('--config.')]
    _fail(
      f'unknown config field in {" ".join(given)}: {e.args[0]}\n'
      'Every field and its meaning is in configs/default.py.'
    )
  except flags.Error as e:
    _fail(f'{e}\nRun with --helpfull to see the flags.')


def _default_workdir() -> str:
  """runs/<config file name>, with its argument if any: runs/paper_cifar_plain56."""
  path, _, argument = flags.FLAGS['config'].config_filename.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}_{argument}' if argument else name)


def main(argv: list[str]) -> None:
  console.quiet_libraries(__file__)
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}: every setting is a --flag or --config.field=value.')
  if _CONFIG.value is None:
    _fail('--config is required, e.g. --config=configs/resnet20.py.')
  workdir = _WORKDIR.value or _default_workdir()
  if '://' in workdir:
    _fail(
      f'--workdir={workdir}: a URL cannot be a workdir. Mount the bucket on every host (e.g. '
      'with gcsfuse) and pass the mounted path.'
    )
  # Imported here so --help and flag errors answer without loading JAX.
  from resnet_jax import distributed, guards, train
  from resnet_jax.errors import UserError
  from resnet_jax.evaluate_checkpoint import evaluate_checkpoint
  from resnet_jax.export import export_checkpoint

  try:
    # Before anything touches a device: JAX's backends must see every process.
    distributed.initialize(
      _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    )
    if not distributed.is_writer():
      logging.set_verbosity(logging.WARNING)  # process 0 tells the story; the rest only warn
    if _MODE.value == 'train':
      train.train_and_evaluate(_CONFIG.value, workdir)
    elif _MODE.value == 'eval':
      evaluate_checkpoint(_CONFIG.value, workdir)
    else:
      export_checkpoint(_CONFIG.value, workdir)
  except UserError as e:
    _fail(str(e))
  except FloatingPointError as e:
    _fail(str(e), NON_FINITE_EXIT)
  except guards.Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(PREEMPTED_EXIT)
  logging.info('Done: %s', os.path.abspath(workdir))


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
