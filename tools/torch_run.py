"""The PyTorch side of tools/parity.py: the reference trained on our batches, resumable.

The model starts from our initial weights (run.state, copied with load_flax_variables) and trains
on the very batches our data path makes: for every step s, train_step.global_batch (the order of
epoch_order(perm_key, epoch), the crop and flip of fold_in(aug_key, s), normalisation, any
cutout), handed over through DLPack as NCHW in channels_last memory (the permuted view of JAX's
NHWC buffer).
PyTorch's model, evaluation sets and batches live on the device JAX's arrays are on: cuda when JAX
runs on the GPU and torch has CUDA, so the batch never leaves device memory; the CPU otherwise
(with a torch build lacking CUDA, jax.device_put copies each batch to the host). Each batch stays
referenced until the steps that read it are done (see to_torch). It takes our schedule's learning
rate at each step and torch.optim.SGD with the same momentum, nesterov, coupled weight decay
(BatchNorm and biases exempt as decay_bn_and_bias says) and label smoothing.

WORKDIR/torch is a run workdir in launch.py's format (metrics.jsonl, config.json, timeline.json,
provenance.json with framework 'pytorch'). At every eval step (each epoch end, and the last step)
WORKDIR/torch/checkpoint.pt is replaced, atomically, by the model's state_dict (BatchNorm's
buffers included), the optimiser's, the step and the train metrics not yet in a log row. Run
again, an unfinished run resumes from it: the log drops its rows past that step and the schedule
and data order continue from it, so the resumed run computes what an uninterrupted one would. A
finished run is read back, not retrained. Either way, a checkpoint of a config that computes
something else is refused, as launch.py refuses one (guards.check_config_change).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F

from reference import torch_models
from resnet_jax import augment, cifar, guards, parallel, records, setup, train, train_step

FRAMEWORK = 'pytorch'  # provenance.json's 'framework'
CHECKPOINT = 'checkpoint.pt'
_AUTOCAST = {'float32': None, 'bfloat16': torch.bfloat16}

Batches = Callable[[int], tuple[jax.Array, jax.Array]]


def shared_device() -> jax.Device:
  """The JAX device whose buffers PyTorch reads: the first GPU if torch has CUDA, else the CPU."""
  if jax.default_backend() == 'gpu' and torch.cuda.is_available():
    return jax.local_devices()[0]
  return jax.local_devices(backend='cpu')[0]


def torch_device(device: jax.Device) -> torch.device:
  """PyTorch's name for a JAX device."""
  if device.platform == 'gpu':
    return torch.device('cuda', device.local_hardware_id)
  return torch.device('cpu')


def make_batches(config: ml_collections.ConfigDict, run: setup.Setup) -> Batches:
  """step -> (images NHWC float32, labels int32) on the run's devices: the batch of step `step`."""
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
      cutout_size=config.augment.cutout_size,
    )
  )
  orders = train.EpochOrders(perm_key, run)
  # int32, as TrainState.step: the same integer arithmetic as inside train_step.
  return lambda step: batch(np.int32(step), images, labels, orders.at(step))


def to_torch(images: jax.Array, labels: jax.Array) -> tuple[torch.Tensor, torch.Tensor]:
  """NHWC images and labels on one device -> NCHW torch tensors there, through DLPack.

  DLPack takes one device's buffer: jax.device_put(batch, shared_device()) gathers a sharded
  batch first. The images are JAX's buffer itself, not a copy, and their permuted view of NHWC
  memory is channels_last already; labels become int64 (a copy), as PyTorch's losses want. Keep
  the arrays alive until PyTorch's work on them is done: PyTorch lets go of the buffer when
  Python drops its tensor, while on a GPU its kernels may still be queued, and JAX could then
  reuse the memory.
  """
  return torch.from_dlpack(images).permute(0, 3, 1, 2), torch.from_dlpack(labels).long()


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


def read_rows(workdir: str) -> list[dict]:
  """The rows of workdir's metrics.jsonl; none where no run has written one."""
  if not os.path.exists(os.path.join(workdir, records.METRICS)):
    return []
  return records.read_metrics(workdir)


def train_torch(
  config: ml_collections.ConfigDict, run: setup.Setup, workdir: str
) -> torch.nn.Module | None:
  """Trains the PyTorch reference into workdir, or resumes it; None if it had finished.

  A finished run (a test row at the last step) is read back, not retrained. Raises UserError
  where workdir's checkpoint is of a config that computes something else.
  """
  os.makedirs(workdir, exist_ok=True)
  with guards.WorkdirLock(workdir):
    if os.path.exists(os.path.join(workdir, CHECKPOINT)):
      saved, saved_timeline = records.read_config(workdir), records.read_timeline(workdir)
      guards.check_config_change(saved, config, saved_timeline, run.timeline)
    test_steps = [r['step'] for r in read_rows(workdir) if r['split'] == 'test']
    if run.timeline.total_steps in test_steps:
      return None
    return _train(config, run, workdir)


class _Window:
  """The train steps since the last log row: their loss and top-1, and the time they took.

  The values stay on the device until a log or eval step reads them, one wait a read rather than
  one a step; reading them waits for every step queued before, so the clock then has what the
  device computed. Time spent evaluating or saving is left out.
  """

  def __init__(self, carried: list[list[float]]):
    self.read = carried  # [loss, top1] of each step read to the host; checkpoints keep them
    self._queued: list[torch.Tensor] = []
    self._batches: list[tuple[jax.Array, jax.Array]] = []  # alive until their steps are done
    self._seconds = 0.0
    # The process's first window also times start-up (compiling our batch function, CUDA's
    # warm-up), so it gets no rate, as the JAX run's compiling call gets none.
    self._rated = False
    self._start = time.perf_counter()

  def add(
    self,
    loss: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    batch: tuple[jax.Array, jax.Array],
  ) -> None:
    """A step's results, and the batch it was handed (see to_torch: kept until read)."""
    top1 = (logits.argmax(-1) == labels).to(loss.dtype).mean()
    self._queued.append(torch.stack([loss, top1]))
    self._batches.append(batch)

  def stop(self) -> None:
    self.read += torch.stack(self._queued).tolist()
    self._queued, self._batches = [], []
    self._seconds += time.perf_counter() - self._start

  def restart(self) -> None:
    self._start = time.perf_counter()

  def row(self, batch_size: int) -> dict[str, float]:
    """Mean loss and top-1 of the stopped window's steps (and images/s), which leave it."""
    loss, top1 = np.mean(self.read, axis=0)
    row = {'loss': float(loss), 'top1': float(top1)}
    if self._rated:
      row['images_per_second'] = len(self.read) * batch_size / self._seconds
    self.read, self._seconds, self._rated = [], 0.0, True
    return row


def _save(
  path: str, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, window: _Window
) -> None:
  """Replaces the checkpoint at path atomically (temporary file, fsync, rename)."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'wb') as f:
    torch.save(
      {
        'step': step,
        'model': model.state_dict(),
        'optimizer': optimizer.state_dict(),
        'unlogged': window.read,
      },
      f,
    )
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _build(
  config: ml_collections.ConfigDict, run: setup.Setup, workdir: str, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.SGD, int, _Window]:
  """The model and optimiser at the start, or as workdir's checkpoint left them; its step."""
  model = torch_models.MODELS[config.model.name](cifar.NUM_CLASSES[config.dataset.name])
  initial = train_step.replica(run.state, 0)
  torch_models.load_flax_variables(
    model, {'params': initial.params, 'batch_stats': initial.batch_stats}
  )
  model = model.to(device, memory_format=torch.channels_last)
  optimizer = torch_optimizer(model, config)
  path = os.path.join(workdir, CHECKPOINT)
  if not os.path.exists(path):
    return model, optimizer, 0, _Window([])
  saved = torch.load(path, map_location=device, weights_only=True)
  model.load_state_dict(saved['model'])
  optimizer.load_state_dict(saved['optimizer'])
  print(f'PyTorch resumes from the checkpoint of step {saved["step"]} in {path}.', flush=True)
  return model, optimizer, saved['step'], _Window(saved['unlogged'])


def _train(config: ml_collections.ConfigDict, run: setup.Setup, workdir: str) -> torch.nn.Module:
  """Trains from step 0 or workdir's checkpoint; logs and evaluates where run.timeline says."""
  shared = shared_device()
  model, optimizer, start, window = _build(config, run, workdir, torch_device(shared))
  records.write_config(workdir, config)
  records.write_timeline(workdir, run.timeline)
  versions = {**records.provenance()['versions'], 'torch': torch.__version__}
  records.write_provenance(
    workdir, framework=FRAMEWORK, versions=versions, torch_threads=torch.get_num_threads()
  )
  mean, std = cifar.CHANNEL_MEAN[config.dataset.name], cifar.CHANNEL_STD[config.dataset.name]
  eval_arrays = {  # kept, as to_torch asks, until the run ends
    name: jax.device_put((augment.normalize(split.images, mean, std), split.labels), shared)
    for name, split in (('test', run.dataset.test), ('validation', run.dataset.validation))
    if split is not None
  }
  eval_sets = {name: to_torch(*arrays) for name, arrays in eval_arrays.items()}
  batches = make_batches(config, run)
  timeline = run.timeline
  log = records.MetricsLog(workdir, start, run.seeds)
  for step in range(start, timeline.total_steps):
    lr = float(run.schedule(step))
    for group in optimizer.param_groups:
      group['lr'] = lr
    batch = jax.device_put(batches(step), shared)
    images, labels = to_torch(*batch)
    model.train()
    loss, logits = torch_models.train_step(
      model, optimizer, images, labels, _AUTOCAST[config.model.dtype], config.label_smoothing
    )
    window.add(loss, logits, labels, batch)
    done = step + 1
    logs, evaluates = timeline.is_log_step(done), timeline.is_eval_step(done)
    if not (logs or evaluates):
      continue
    window.stop()
    epoch = done / timeline.epoch_steps
    if logs:
      log.write(done, 'train', [{'epoch': epoch, **window.row(config.batch_size), 'lr': lr}])
    if evaluates:
      for name, (split_images, split_labels) in eval_sets.items():
        result = torch_evaluate(model, split_images, split_labels, config.eval.batch_size)
        print(
          f'PyTorch eval {name} at step {done}: loss {result["loss"]:.4f}  '
          f'top1 {result["top1"]:.4f}',
          flush=True,
        )
        log.write(done, name, [{'epoch': epoch, **result}])
      _save(os.path.join(workdir, CHECKPOINT), done, model, optimizer, window)
    window.restart()
  log.close()
  return model
