"""The entry point: train (or resume) a run, evaluate its checkpoint, or export it.

  python launch.py --config=configs/resnet18.py                  # --workdir: runs/resnet18
  python launch.py --workdir=runs/resnet18 --mode=eval           # the config saved in the workdir
  python launch.py --workdir=runs/resnet18 --mode=export         # weights for PyTorch and flax
  python launch.py --config=configs/resnet20.py --config.batch_size=256 --workdir=/mnt/runs/r20

Several hosts: run the same command on every host (docs/scaling-out.md); JAX's runtime joins
them when SLURM, Open MPI or a Cloud TPU pod slice announces the processes, or when given
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I.

Mistakes a user can fix (bad config values, missing data, no checkpoint) end with a one-paragraph
message and exit status 2, without a traceback; a NaN or infinite loss with 3; a run stopped by
SIGTERM or SIGINT, after saving a checkpoint, with 75.
"""

import contextlib
import difflib
import os
import sys
from collections.abc import Iterator

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from configs import default
from resnet_jax import console, records, saved_config
from resnet_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  "A config file from configs/. Default: the --workdir's config.json, the run as it was saved.",
  lock_config=True,
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


@contextlib.contextmanager
def _flag_errors(argv: list[str]) -> Iterator[None]:
  """absl's and config_flags' errors as messages: an unknown --config.field is not a traceback."""
  try:
    yield
  except (AttributeError, KeyError) as e:
    unknown = _unknown_fields(argv) or [f'unknown config field: {e.args[0]}']
    _fail('\n'.join(unknown) + '\nEvery field and its meaning is in configs/default.py.')
  except flags.Error as e:
    _fail(f'{e}\nRun with --helpfull to see the flags.')


def _field_names(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names += _field_names(value, f'{prefix}{key}.')
    else:
      names.append(prefix + key)
  return names


def _closest(name: str, fields: list[str]) -> list[str]:
  """The fields name may have meant: close as a whole, or by the last part (learning_rate is
  optimizer.learning_rate)."""
  last = {field: field.rpartition('.')[2] for field in fields}
  near_last = difflib.get_close_matches(name.rpartition('.')[2], set(last.values()), cutoff=0.8)
  whole = difflib.get_close_matches(name, fields, cutoff=0.7)
  return list(dict.fromkeys(whole + [f for f in fields if last[f] in near_last]))[:3]


def _unknown_fields(argv: list[str]) -> list[str]:
  """A line for each --config.field of argv that configs/default.py lacks, naming the closest."""
  fields = _field_names(default.get_config())
  sections = {field.rpartition('.')[0] for field in fields}
  lines = []
  for arg in argv[1:]:
    if not arg.startswith('--config.'):
      continue
    name = arg.removeprefix('--config.').partition('=')[0]
    if name in fields or name in sections:
      continue
    closest = _closest(name, fields)
    guess = f' Did you mean {" or ".join(closest)}?' if closest else ''
    lines.append(f'unknown config field {name} (in {arg}).{guess}')
  return lines


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, leaving --config.field=value to main when there is no --config.

  Without --config the overrides are no flags yet: main applies them to the workdir's config.json.
  """
  with _flag_errors(argv):
    rest = flags.FLAGS(argv, known_only=True)
    # With --config every override was a flag: what is left is positional or an unknown flag,
    # which the strict parse reports.
    return rest if _CONFIG.value is None else flags.FLAGS(rest)


def _saved_config(workdir: str, argv: list[str]) -> tuple[ml_collections.ConfigDict, list[str]]:
  """The config.json of the run in workdir with argv's overrides applied; and the rest of argv."""
  path = os.path.join(workdir, records.CONFIG)
  saved = records.read_config(workdir)
  if saved is None:
    _fail(
      f"No --config, and no {path} to take the run's config from (training writes it there). "
      'Pass --config=configs/<recipe>.py, or the --workdir of a run.'
    )
  logging.info('Config: %s, as the run saved it.', path)
  try:
    config = saved_config.from_saved(saved, default.get_config(), path)
  except UserError as e:
    _fail(str(e))
  with _flag_errors(argv):
    return config, saved_config.apply_overrides(config, argv)


def _default_workdir() -> str:
  """runs/<config file name>, with its argument if any: runs/paper_cifar_plain56."""
  path, _, argument = flags.FLAGS['config'].config_filename.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}_{argument}' if argument else name)


def main(argv: list[str]) -> None:
  console.quiet_libraries(__file__)
  config = _CONFIG.value
  if config is None and _WORKDIR.value is None:
    _fail(
      '--config is required, e.g. --config=configs/resnet20.py, unless --workdir names a run '
      'to take its config.json from.'
    )
  workdir = _WORKDIR.value or _default_workdir()
  if '://' in workdir:
    _fail(
      f'--workdir={workdir}: a URL cannot be a workdir. Mount the bucket on every host (e.g. '
      'with gcsfuse) and pass the mounted path.'
    )
  if config is None:
    config, argv = _saved_config(workdir, argv)
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}: every setting is a --flag or --config.field=value.')
  # Imported here so --help and flag errors answer without loading JAX.
  from resnet_jax import distributed, guards, train
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
      train.train_and_evaluate(config, workdir)
    elif _MODE.value == 'eval':
      evaluate_checkpoint(config, workdir)
    else:
      export_checkpoint(config, workdir)
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
