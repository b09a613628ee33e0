"""Trains one config twice on identical inputs, resnet_jax and its PyTorch reference, and compares.

Both frameworks start from the same weights (our init, copied with load_flax_variables) and see
the same batches: for every step s, the augmented, normalised global batch that our data path
trains on (train_step.global_batch: the order of epoch_order(perm_key, epoch), the crop and flip
of fold_in(aug_key, s), normalisation), handed to PyTorch as NCHW in channels_last memory. PyTorch
takes our schedule's learning rate at each step and torch.optim.SGD with the same momentum,
nesterov, coupled weight decay (BatchNorm and biases exempt as decay_bn_and_bias says) and label
smoothing. The JAX side is train.train_and_evaluate itself, what launch.py runs.

Both evaluate the test set (and the validation split, if any) at the end of every epoch and log
the train loss every steps_per_call steps: the run overrides the eval cadence to one epoch
(eval_every_epochs=1) and the log cadence to steps_per_call steps, and both frameworks log and
evaluate at the steps the run's timeline says. WORKDIR/jax and WORKDIR/torch are run workdirs in
launch.py's format (metrics.jsonl, config.json, timeline.json, provenance.json, whose 'framework'
field is 'jax' or 'pytorch'), written through resnet_jax.records; the table of both runs is
printed and written to WORKDIR/comparison.txt. Run again, the JAX run resumes from its newest
checkpoint and a finished PyTorch run is read back; an unfinished one starts over. From the
repository root:

  python -m tools.parity --config=configs/resnet20_short.py --workdir=runs/parity \\
      --config.dataset.source=archive --config.dataset.data_dir=/work/data_cifar10

PyTorch supports the models of reference.torch_models.MODELS, with their published shortcuts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable

# JAX and PyTorch share a GPU in this process; JAX must not take 75% of its memory at start.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# pylint: disable=g-import-not-at-top
import jax
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from absl import app, flags
from ml_collections import config_flags

from reference import torch_models
from resnet_jax import (
  augment,
  cifar,
  parallel,
  records,
  setup,
  train,
  train_step,
  validation,
)
from resnet_jax.errors import UserError

# pylint: enable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config file from configs/.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Writes WORKDIR/jax and WORKDIR/torch.')

FRAMEWORKS = {'jax': 'jax', 'torch': 'pytorch'}  # subfolder -> provenance.json's 'framework'
_AUTOCAST = {'float32': None, 'bfloat16': torch.bfloat16}

Batches = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class Parity:
  """What run_parity trained: both final models and both runs' metrics rows."""

  config: ml_collections.ConfigDict  # as both ran: with the evaluation and logging cadence
  epoch_steps: int
  jax_state: train_step.TrainState  # the JAX run's only replica
  torch_model: torch.nn.Module | None  # None when a finished run was read back
  rows: dict[str, list[dict]]  # 'jax' / 'torch' -> the rows of its metrics.jsonl


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
  config = config.copy_and_resolve_references()
  config.eval_every_steps = 0
  config.eval_every_epochs = 1.0
  config.log_every_epochs = 0.0
  config.log_every_steps = config.steps_per_call
  return config


class _EpochOrder:
  """The data order of one epoch at a time, on the device, as the training loop keeps it."""

  def __init__(self, perm_key: jax.Array, run: setup.Setup):
    self._perm_key, self._run = perm_key, run
    self._epoch, self._order = None, None

  def at(self, step: int) -> jax.Array:
    epoch = step // self._run.timeline.epoch_steps
    if epoch != self._epoch:
      self._order = train_step.epoch_order(
        self._perm_key, epoch, len(self._run.dataset.train.labels), self._run.mesh
      )
      self._epoch = epoch
    return self._order


def make_batches(config: ml_collections.ConfigDict, run: setup.Setup) -> Batches:
  """step -> (images NHWC float32, labels int32): the global batch train step `step` trains on."""
  _, perm_key, aug_key = train_step.run_keys(config.seed)
  images, labels = parallel.replicate(
    (run.dataset.train.images, run.dataset.train.labels), run.mesh
  )
  batch = jax.jit(
    functools.partial(
      train_step.global_batch,
      aug_key=aug_key,
      batch_size=config.batch_size,
      epoch_steps=run.timeline.epoch_steps,
      mean=cifar.CHANNEL_MEAN[config.dataset.name],
      std=cifar.CHANNEL_STD[config.dataset.name],
      mesh=run.mesh,
    )
  )
  orders = _EpochOrder(perm_key, run)
  # int32, as TrainState.step: the same integer arithmetic as inside train_step.
  return lambda step: jax.device_get(batch(np.int32(step), images, labels, orders.at(step)))


def to_torch(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
  """NHWC numpy -> NCHW torch: the permuted view of NHWC memory is channels_last already.

  Copies: arrays fetched from JAX are read-only, and PyTorch wants to own writable memory.
  """
  return (
    torch.from_numpy(np.array(images)).permute(0, 3, 1, 2),
    torch.from_numpy(labels.astype(np.int64)),
  )


def torch_optimizer(model: torch.nn.Module, config: ml_collections.ConfigDict) -> torch.optim.SGD:
  """torch.optim.SGD as optim.create_optimizer; the lr is set before every step."""
  opt = config.optimizer
  params = list(model.parameters())
  if opt.decay_bn_and_bias:
    groups = [{'params': params, 'weight_decay': opt.weight_decay}]
  else:  # optim._decay_mask: only kernels (ndim > 1) are decayed
    groups = [
      {'params': [p for p in params if p.dim() > 1], 'weight_decay': opt.weight_decay},
      {'params': [p for p in params if p.dim() <= 1], 'weight_decay': 0.0},
    ]
  return torch.optim.SGD(groups, lr=0.0, momentum=opt.momentum, nesterov=opt.nesterov)


def torch_evaluate(
  model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, float]:
  """Loss, top-1 and top-5 over a split, as evaluation.make_eval_fn computes them."""
  model.eval()
  sums = np.zeros(3)
  with torch.no_grad():
    for start in range(0, len(labels), batch_size):
      batch_labels = labels[start : start + batch_size]
      logits = model(images[start : start + batch_size])
      top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
      sums += [
        F.cross_entropy(logits, batch_labels, reduction='sum').item(),
        (top5[:, 0] == batch_labels).sum().item(),
        (top5 == batch_labels[:, None]).any(-1).sum().item(),
      ]
  loss, top1, top5 = sums / len(labels)
  return {'loss': loss, 'top1': top1, 'top5': top5, 'count': len(labels)}


def _mark_jax_framework(workdir: str) -> None:
  """Adds framework 'jax' to the provenance.json that train_and_evaluate wrote."""
  path = os.path.join(workdir, records.PROVENANCE)
  record = records.read_json(path)
  if record is not None and record.get('framework') != FRAMEWORKS['jax']:
    records.write_json(path, {**record, 'framework': FRAMEWORKS['jax']})


def _write_torch_provenance(workdir: str) -> None:
  """provenance.json of the PyTorch run: framework 'pytorch', torch's version and threads."""
  versions = {**records.provenance()['versions'], 'torch': torch.__version__}
  records.write_provenance(
    workdir, framework=FRAMEWORKS['torch'], versions=versions, torch_threads=torch.get_num_threads()
  )


def read_rows(workdir: str) -> list[dict]:
  """The rows of workdir's metrics.jsonl; none where no run has written one."""
  if not os.path.exists(os.path.join(workdir, records.METRICS)):
    return []
  return records.read_metrics(workdir)


def _finished(workdir: str, total_steps: int) -> bool:
  return any(r['step'] == total_steps for r in read_rows(workdir) if r['split'] == 'test')


def train_torch(
  config: ml_collections.ConfigDict, run: setup.Setup, batches: Batches, workdir: str
) -> torch.nn.Module:
  """Trains the PyTorch reference from run.state on our batches; writes workdir as training does.

  Logs and evaluates at the steps run.timeline says, as the JAX run does.
  """
  shutil.rmtree(workdir, ignore_errors=True)  # no checkpoints: an unfinished run starts over
  os.makedirs(workdir)
  records.write_config(workdir, config)
  records.write_timeline(workdir, run.timeline)
  _write_torch_provenance(workdir)
  model = torch_models.MODELS[config.model.name](cifar.NUM_CLASSES[config.dataset.name])
  initial = train_step.replica(run.state, 0)
  torch_models.load_flax_variables(
    model, {'params': initial.params, 'batch_stats': initial.batch_stats}
  )
  model = model.to(memory_format=torch.channels_last)
  optimizer = torch_optimizer(model, config)
  mean, std = cifar.CHANNEL_MEAN[config.dataset.name], cifar.CHANNEL_STD[config.dataset.name]
  eval_sets = {
    name: to_torch(np.asarray(augment.normalize(split.images, mean, std)), split.labels)
    for name, split in (('test', run.dataset.test), ('validation', run.dataset.validation))
    if split is not None
  }
  timeline = run.timeline
  log = records.MetricsLog(workdir, 0, run.seeds)
  pending, seconds = [], 0.0
  for step in range(timeline.total_steps):
    lr = float(run.schedule(step))
    for group in optimizer.param_groups:
      group['lr'] = lr
    images, labels = to_torch(*batches(step))
    model.train()
    start = time.perf_counter()
    loss, logits = torch_models.train_step(
      model, optimizer, images, labels, _AUTOCAST[config.model.dtype], config.label_smoothing
    )
    seconds += time.perf_counter() - start  # PyTorch's step only, not our batch on the host
    pending.append((loss.item(), (logits.argmax(-1) == labels).float().mean().item()))
    done = step + 1
    if timeline.is_log_step(done):
      loss_mean, top1_mean = np.mean(pending, axis=0)
      log.write(
        done,
        'train',
        [
          {
            'epoch': done / timeline.epoch_steps,
            'loss': float(loss_mean),
            'top1': float(top1_mean),
            'lr': lr,
            'images_per_second': len(pending) * config.batch_size / seconds,
          }
        ],
      )
      pending, seconds = [], 0.0
    if timeline.is_eval_step(done):
      for name, (split_images, split_labels) in eval_sets.items():
        result = torch_evaluate(model, split_images, split_labels, config.eval.batch_size)
        print(
          f'PyTorch eval {name} at step {done}: loss {result["loss"]:.4f}  '
          f'top1 {result["top1"]:.4f}',
          flush=True,
        )
        log.write(done, name, [{'epoch': done / timeline.epoch_steps, **result}])
  log.close()
  return model


def run_parity(config: ml_collections.ConfigDict, workdir: str) -> Parity:
  """Trains (or resumes, or reads back) both frameworks' runs under workdir."""
  config = parity_config(config)
  validation.validate_config(config, jax.device_count())
  run = setup.setup(config)
  dirs = {name: os.path.join(workdir, name) for name in FRAMEWORKS}
  jax_state = train_step.replica(train.train_and_evaluate(config, dirs['jax']), 0)
  _mark_jax_framework(dirs['jax'])
  torch_model = None
  if not _finished(dirs['torch'], run.timeline.total_steps):
    torch_model = train_torch(config, run, make_batches(config, run), dirs['torch'])
  return Parity(
    config,
    run.timeline.epoch_steps,
    jax_state,
    torch_model,
    {name: read_rows(path) for name, path in dirs.items()},
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


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    sys.exit(f'unexpected arguments {argv[1:]}')
  if _CONFIG.value is None or _WORKDIR.value is None:
    sys.exit('--config and --workdir are required.')
  try:
    parity = run_parity(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(2)
  lines = report(parity)
  records.write_text(os.path.join(_WORKDIR.value, 'comparison.txt'), '\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
