"""Trains one config twice on identical inputs, resnet_jax and its PyTorch reference, and compares.

Both frameworks start from the same weights (our init) and see the same batches: those our data
path trains on, handed to PyTorch on the device through DLPack (tools/torch_run.py says how). The
JAX side is train.train_and_evaluate itself, what launch.py runs.

Both evaluate the test set (and the validation split, if any) at the end of every epoch and log
the train loss every steps_per_call steps: the run overrides the eval cadence to one epoch
(eval_every_epochs=1) and the log cadence to steps_per_call steps, and both frameworks log and
evaluate at the steps the run's timeline says. WORKDIR/jax and WORKDIR/torch are run workdirs in
launch.py's format (metrics.jsonl, config.json, timeline.json, provenance.json, whose 'framework'
field is 'jax' or 'pytorch'), written through resnet_jax.records; the table of both runs is
printed and written to WORKDIR/comparison.txt. Run again, each run resumes from its newest
checkpoint (PyTorch's is saved at every epoch end), and a finished one is read back. From the
repository root:

  python -m tools.parity --config=configs/resnet20_short.py --workdir=runs/parity \\
      --config.dataset.source=archive --config.dataset.data_dir=/work/data_cifar10

--frameworks=torch trains the PyTorch reference alone (its weights and batches come from our
setup and data path, not from the JAX run) and compares nothing: its JAX counterpart is the run of
the same config and seed, trained by launch.py or by this tool with both frameworks.

PyTorch supports the models of reference.torch_models.MODELS, with their published shortcuts.
"""

from __future__ import annotations

import dataclasses
import os
import sys

# JAX and PyTorch share a GPU in this process; JAX must not take 75% of its memory at start.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# pylint: disable=g-import-not-at-top
import jax
import ml_collections
import torch
from absl import app, flags
from ml_collections import config_flags

from reference import torch_models
from resnet_jax import records, setup, train, train_step, validation
from resnet_jax.errors import UserError
from tools import torch_run

# pylint: enable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config file from configs/.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Writes WORKDIR/jax and WORKDIR/torch.')
_FRAMEWORKS = flags.DEFINE_list(
  'frameworks',
  ['jax', 'torch'],
  'jax,torch: train both and compare; torch: the PyTorch reference alone, compared with nothing.',
)

FRAMEWORKS = {'jax': 'jax', 'torch': torch_run.FRAMEWORK}  # subfolder -> provenance's 'framework'


@dataclasses.dataclass
class Parity:
  """What run_parity trained: the final models and the runs' metrics rows."""

  config: ml_collections.ConfigDict  # as both ran: with the evaluation and logging cadence
  epoch_steps: int
  jax_state: train_step.TrainState | None  # the JAX run's only replica; None when not trained
  torch_model: torch.nn.Module | None  # None when a finished run was read back
  rows: dict[str, list[dict]]  # 'jax' / 'torch' -> the rows of its metrics.jsonl, if it ran


def parity_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy that evaluates every epoch and logs every steps_per_call steps.

  Raises UserError where PyTorch has no such model, or for several replicas.
  """
  if config.num_replicas != 1:
    raise UserError(
      f'config.num_replicas={config.num_replicas}: the PyTorch side trains one seed; '
      'compare one seed at a time (tools/sweep.py runs several).'
    )
  if config.model.name not in torch_models.MODELS or config.model.shortcut:
    raise UserError(
      f'PyTorch has {", ".join(sorted(torch_models.MODELS))} with their '
      f'published shortcuts; not model.name={config.model.name!r} with '
      f'model.shortcut={config.model.shortcut!r}.'
    )
  if config.model.dropout_rate:
    raise UserError(
      f'config.model.dropout_rate={config.model.dropout_rate}: JAX and PyTorch would drop '
      'different activations, so the runs could not be compared step by step. Compare with '
      '--config.model.dropout_rate=0.'
    )
  config = config.copy_and_resolve_references()
  config.eval_every_steps = 0
  config.eval_every_epochs = 1.0
  config.log_every_epochs = 0.0
  config.log_every_steps = config.steps_per_call
  return config


def _mark_jax_framework(workdir: str) -> None:
  """Adds framework 'jax' to the provenance.json that train_and_evaluate wrote."""
  path = os.path.join(workdir, records.PROVENANCE)
  record = records.read_json(path)
  if record is not None and record.get('framework') != FRAMEWORKS['jax']:
    records.write_json(path, {**record, 'framework': FRAMEWORKS['jax']})


def run_parity(
  config: ml_collections.ConfigDict, workdir: str, frameworks: tuple[str, ...] = ('jax', 'torch')
) -> Parity:
  """Trains (or resumes, or reads back) the frameworks' runs under workdir.

  frameworks: ('jax', 'torch'), or ('torch',) for the PyTorch reference alone; else UserError.
  """
  if sorted(frameworks) not in (['jax', 'torch'], ['torch']):
    raise UserError(
      f'--frameworks={",".join(frameworks)}: jax,torch (both, compared) or torch (the PyTorch '
      'reference alone); a JAX run alone is what launch.py trains.'
    )
  config = parity_config(config)
  validation.validate_config(config, jax.device_count())
  run = setup.setup(config)
  dirs = {name: os.path.join(workdir, name) for name in FRAMEWORKS if name in frameworks}
  jax_state = None
  if 'jax' in dirs:
    jax_state = train_step.replica(train.train_and_evaluate(config, dirs['jax']), 0)
    _mark_jax_framework(dirs['jax'])
  torch_model = torch_run.train_torch(config, run, dirs['torch'])
  return Parity(
    config,
    run.timeline.epoch_steps,
    jax_state,
    torch_model,
    {name: torch_run.read_rows(path) for name, path in dirs.items()},
  )


def _per_epoch(rows: list[dict], epoch_steps: int, batch_size: int) -> dict[int, dict]:
  """Epoch -> mean train loss, train seconds (from images/s), and the rows' losses by step."""
  out = {}
  previous = 0
  for row in (r for r in rows if r['split'] == 'train'):
    epoch = -(-row['step'] // epoch_steps)
    entry = out.setdefault(
      epoch, {'steps': 0, 'loss_sum': 0.0, 'seconds': 0.0, 'losses': {}, 'unrated': 0}
    )
    steps = row['step'] - previous
    previous = row['step']
    entry['steps'] += steps
    entry['loss_sum'] += row['loss'] * steps
    entry['losses'][row['step']] = row['loss']
    if row.get('images_per_second'):
      entry['seconds'] += steps * batch_size / row['images_per_second']
    else:
      entry['unrated'] += steps  # the call that compiled: counted at the epoch's mean rate
  for entry in out.values():
    rated = entry['steps'] - entry['unrated']
    if rated:
      entry['seconds'] *= entry['steps'] / rated
  return out


def report(parity: Parity) -> list[str]:
  """Per epoch: both train losses, their largest relative difference at a log step, test top-1."""
  epochs = {
    name: _per_epoch(rows, parity.epoch_steps, parity.config.batch_size)
    for name, rows in parity.rows.items()
  }
  tests = {
    name: {-(-r['step'] // parity.epoch_steps): r for r in rows if r['split'] == 'test'}
    for name, rows in parity.rows.items()
  }
  lines = [
    (
      f'{parity.config.model.name}, seed {parity.config.seed}, {parity.epoch_steps} '
      f'steps an epoch; loss logged every {parity.config.log_every_steps} steps.'
    ),
    (
      '| epoch | JAX train loss | PyTorch train loss | max rel. diff at a log step | '
      'JAX test top-1 | PyTorch test top-1 | JAX train s | PyTorch train s |'
    ),
    '|---|---|---|---|---|---|---|---|',
  ]
  for epoch in sorted(epochs['jax']):
    ours, ref = epochs['jax'][epoch], epochs['torch'].get(epoch)
    if ref is None:
      break
    diff = max(
      abs(ours['losses'][s] - ref['losses'][s]) / abs(ref['losses'][s])
      for s in ours['losses']
      if s in ref['losses']
    )
    top1 = [tests[name].get(epoch, {}).get('top1', float('nan')) for name in ('jax', 'torch')]
    lines.append(
      f'| {epoch} | {ours["loss_sum"] / ours["steps"]:.4f} | '
      f'{ref["loss_sum"] / ref["steps"]:.4f} | {diff:.2e} | {top1[0]:.4f} | '
      f'{top1[1]:.4f} | {ours["seconds"]:.0f} | {ref["seconds"]:.0f} |'
    )
  first = [next(r for r in parity.rows[name] if r['split'] == 'train') for name in ('jax', 'torch')]
  lines.append(
    f'First logged train loss (step {first[0]["step"]}): JAX {first[0]["loss"]:.6f}, '
    f'PyTorch {first[1]["loss"]:.6f}, relative difference '
    f'{abs(first[0]["loss"] - first[1]["loss"]) / first[1]["loss"]:.2e}.'
  )
  final = [max(tests[name].items())[1] for name in ('jax', 'torch')]
  lines.append(
    f'Final-epoch test top-1 (step {final[0]["step"]}): JAX {final[0]["top1"]:.4f}, '
    f'PyTorch {final[1]["top1"]:.4f}.'
  )
  return lines


def uncompared(parity: Parity, workdir: str) -> str:
  """What a PyTorch-only run says instead of the comparison: the JAX run to compare it with."""
  return (
    f'Trained the PyTorch reference alone (--frameworks=torch) into {workdir}/torch; nothing '
    f'compared. Compare it with the JAX run of the same config and seed {parity.config.seed}: '
    f'launch.py with the same --config and overrides, or this command with '
    f'--frameworks=jax,torch, which trains {workdir}/jax and writes the comparison.'
  )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    sys.exit(f'unexpected arguments {argv[1:]}')
  if _CONFIG.value is None or _WORKDIR.value is None:
    sys.exit('--config and --workdir are required.')
  try:
    parity = run_parity(_CONFIG.value, _WORKDIR.value, tuple(_FRAMEWORKS.value))
  except UserError as e:
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(2)
  if 'jax' not in parity.rows:
    print(uncompared(parity, _WORKDIR.value))
    return
  lines = report(parity)
  records.write_text(os.path.join(_WORKDIR.value, 'comparison.txt'), '\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
