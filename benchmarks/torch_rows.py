"""The PyTorch rows of benchmarks/throughput.py: the reference models of reference/torch_models.py
in channels_last, eager and torch.compile'd in each mode asked for, on a fixed batch on the
device."""

from __future__ import annotations

import functools

import torch

from benchmarks.rows import DATASET, LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, Row, Runner
from reference import torch_models
from resnet_jax import cifar


class TorchRunner:
  """One torch_models.train_step per call, synchronised on a GPU."""

  def __init__(
    self,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast_dtype: torch.dtype | None,
  ):
    self.model = model
    self.optimizer = torch.optim.SGD(
      model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    self.images = images
    self.labels = labels
    self.autocast_dtype = autocast_dtype
    self.cuda = images.is_cuda
    self.base_bytes = 0

  def __call__(self) -> None:
    torch_models.train_step(
      self.model, self.optimizer, self.images, self.labels, self.autocast_dtype
    )
    if self.cuda:
      torch.cuda.synchronize()

  def _own_bytes(self) -> int:
    """What this row keeps between steps: weights, BatchNorm statistics, gradients, momentum."""
    params = list(self.model.parameters())
    tensors = [*params, *self.model.buffers(), self.images, self.labels]
    tensors += [p.grad for p in params if p.grad is not None]
    tensors += [
      value
      for state in self.optimizer.state.values()
      for value in state.values()
      if torch.is_tensor(value)
    ]
    return sum(t.nbytes for t in tensors)

  def begin(self) -> None:
    if self.cuda:
      # The other rows' models stay allocated between rounds: count only what this row adds.
      self.base_bytes = torch.cuda.memory_allocated() - self._own_bytes()
      torch.cuda.reset_peak_memory_stats()

  def end(self) -> int | None:
    if not self.cuda:
      return None
    peak = torch.cuda.max_memory_allocated() - self.base_bytes
    # JAX allocates as it goes (no preallocation): give it back what PyTorch keeps cached.
    torch.cuda.empty_cache()
    return peak


def torch_rows(model_name: str, dtype: str, batch_size: int, modes: list[str]) -> list[Row]:
  """A row per mode of one model and dtype: 'eager', or a torch.compile mode ('default',
  'reduce-overhead': CUDA graphs, 'max-autotune': also searches kernel configurations)."""
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  autocast_dtype = {'float32': None, 'bfloat16': torch.bfloat16}[dtype]

  def runner(mode: str) -> Runner:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, 32, 32, generator=generator).to(
      device, memory_format=torch.channels_last
    )
    labels = torch.randint(0, cifar.NUM_CLASSES[DATASET], (batch_size,), generator=generator).to(
      device
    )
    model = torch_models.MODELS[model_name](cifar.NUM_CLASSES[DATASET]).to(
      device, memory_format=torch.channels_last
    )
    if mode != 'eager':
      model = torch.compile(model, mode=mode)
    return TorchRunner(model, images, labels, autocast_dtype)

  return [
    Row(
      model_name,
      dtype,
      'PyTorch',
      'eager' if mode == 'eager' else f'torch.compile {mode}',
      functools.partial(runner, mode),
      may_fail=mode != 'eager',
    )
    for mode in modes
  ]
