"""PyTorch reference models, their training step, and loading flax weights.

The models copy the published code so parity tests and benchmarks compare
against the real thing:

* resnet20(), resnet56(): akamaster/pytorch_resnet_cifar10 resnet.py (He et
  al. 2015's CIFAR nets, shortcut option A, kaiming_normal_ init).
* resnet18(), resnet34(), resnet50(): kuangliu/pytorch-cifar models/resnet.py
  (ImageNet's ResNets adapted to CIFAR, PyTorch's default init).
* resnet20(..., option='B'): akamaster's option B, projection shortcuts.
* the pre-activation and wide nets: reference/torch_preact.py.

Both repositories name their classes BasicBlock and ResNet; the prefixes here
tell the two apart. Attribute names are the originals', which
resnet_jax.models mirrors, so load_flax_variables maps weights by name.
"""

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from reference import torch_preact
from resnet_jax import export

# --- akamaster/pytorch_resnet_cifar10 resnet.py ---


def _weights_init(m):
  if isinstance(m, (nn.Linear, nn.Conv2d)):
    init.kaiming_normal_(m.weight)


class LambdaLayer(nn.Module):
  def __init__(self, lambd):
    super().__init__()
    self.lambd = lambd

  def forward(self, x):
    return self.lambd(x)


class AkamasterBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_planes, planes, stride=1, option='A'):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)

    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      if option == 'A':
        # For CIFAR10 ResNet paper uses option A.
        self.shortcut = LambdaLayer(
          lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), 'constant', 0)
        )
      elif option == 'B':
        self.shortcut = nn.Sequential(
          nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
          nn.BatchNorm2d(self.expansion * planes),
        )

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    out += self.shortcut(x)
    out = F.relu(out)
    return out


class _AkamasterBasicBlockB(AkamasterBasicBlock):
  """akamaster's block with option B, which its ResNet builds as block(in, planes, stride)."""

  def __init__(self, in_planes, planes, stride=1):
    super().__init__(in_planes, planes, stride, option='B')


_AKAMASTER_BLOCKS = {'A': AkamasterBasicBlock, 'B': _AkamasterBasicBlockB}


class AkamasterResNet(nn.Module):
  def __init__(self, block, num_blocks, num_classes=10):
    super().__init__()
    self.in_planes = 16

    self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(16)
    self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
    self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
    self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
    self.linear = nn.Linear(64, num_classes)

    self.apply(_weights_init)

  def _make_layer(self, block, planes, num_blocks, stride):
    strides = [stride] + [1] * (num_blocks - 1)
    layers = []
    for block_stride in strides:
      layers.append(block(self.in_planes, planes, block_stride))
      self.in_planes = planes * block.expansion

    return nn.Sequential(*layers)

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.layer1(out)
    out = self.layer2(out)
    out = self.layer3(out)
    out = F.avg_pool2d(out, out.size()[3])
    out = out.view(out.size(0), -1)
    out = self.linear(out)
    return out


def resnet20(num_classes: int = 10, option: str = 'A') -> AkamasterResNet:
  return AkamasterResNet(_AKAMASTER_BLOCKS[option], [3] * 3, num_classes)


def resnet32(num_classes: int = 10, option: str = 'A') -> AkamasterResNet:
  return AkamasterResNet(_AKAMASTER_BLOCKS[option], [5] * 3, num_classes)


def resnet44(num_classes: int = 10, option: str = 'A') -> AkamasterResNet:
  return AkamasterResNet(_AKAMASTER_BLOCKS[option], [7] * 3, num_classes)


def resnet56(num_classes: int = 10, option: str = 'A') -> AkamasterResNet:
  return AkamasterResNet(_AKAMASTER_BLOCKS[option], [9] * 3, num_classes)


def resnet110(num_classes: int = 10, option: str = 'A') -> AkamasterResNet:
  return AkamasterResNet(_AKAMASTER_BLOCKS[option], [18] * 3, num_classes)


# --- kuangliu/pytorch-cifar models/resnet.py ---


class KuangliuBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_planes, planes, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)

    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != self.expansion * planes:
      self.shortcut = nn.Sequential(
        nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(self.expansion * planes),
      )

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    out += self.shortcut(x)
    out = F.relu(out)
    return out


class KuangliuBottleneck(nn.Module):
  expansion = 4

  def __init__(self, in_planes, planes, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
    self.bn3 = nn.BatchNorm2d(self.expansion * planes)

    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != self.expansion * planes:
      self.shortcut = nn.Sequential(
        nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(self.expansion * planes),
      )

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    out += self.shortcut(x)
    out = F.relu(out)
    return out


class KuangliuResNet(nn.Module):
  def __init__(self, block, num_blocks, num_classes=10):
    super().__init__()
    self.in_planes = 64

    self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
    self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
    self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
    self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
    self.linear = nn.Linear(512 * block.expansion, num_classes)

  def _make_layer(self, block, planes, num_blocks, stride):
    strides = [stride] + [1] * (num_blocks - 1)
    layers = []
    for block_stride in strides:
      layers.append(block(self.in_planes, planes, block_stride))
      self.in_planes = planes * block.expansion
    return nn.Sequential(*layers)

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.layer1(out)
    out = self.layer2(out)
    out = self.layer3(out)
    out = self.layer4(out)
    out = F.avg_pool2d(out, 4)
    out = out.view(out.size(0), -1)
    out = self.linear(out)
    return out


def resnet18(num_classes: int = 10) -> KuangliuResNet:
  return KuangliuResNet(KuangliuBasicBlock, [2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 10) -> KuangliuResNet:
  return KuangliuResNet(KuangliuBasicBlock, [3, 4, 6, 3], num_classes)


def resnet50(num_classes: int = 10) -> KuangliuResNet:
  return KuangliuResNet(KuangliuBottleneck, [3, 4, 6, 3], num_classes)


# resnet_jax.models name -> the reference that model ports.
MODELS: Mapping[str, Callable[..., nn.Module]] = {
  'preact_resnet18': torch_preact.preact_resnet18,
  'preact_resnet164': torch_preact.preact_resnet164,
  'preact_resnet1001': torch_preact.preact_resnet1001,
  'resnet18': resnet18,
  'resnet20': resnet20,
  'resnet32': resnet32,
  'resnet34': resnet34,
  'resnet44': resnet44,
  'resnet50': resnet50,
  'resnet56': resnet56,
  'resnet110': resnet110,
  'wrn16_8': torch_preact.wrn16_8,
  'wrn28_10': torch_preact.wrn28_10,
}


# --- training ---


def train_step(
  model: nn.Module,
  optimizer: torch.optim.Optimizer,
  images: torch.Tensor,
  labels: torch.Tensor,
  autocast_dtype: torch.dtype | None = None,
  label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
  """One SGD step, as resnet_jax.train_step.update_on_batch takes one.

  Args:
    model: in training mode (BatchNorm uses and updates batch statistics).
    optimizer: over model's parameters.
    images: NCHW, on the model's device.
    labels: int64 class indices.
    autocast_dtype: e.g. torch.bfloat16 to run the forward pass under
      torch.autocast; None runs it in the parameters' dtype.
    label_smoothing: as resnet_jax's config.label_smoothing (the same
      formula: (1 - a) * one_hot + a / num_classes).

  Returns:
    The mean loss and the logits of the batch, detached.
  """
  optimizer.zero_grad(set_to_none=True)
  autocast = (
    torch.autocast(images.device.type, dtype=autocast_dtype)
    if autocast_dtype is not None
    else contextlib.nullcontext()
  )
  with autocast:
    logits = model(images)
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
  loss.backward()
  optimizer.step()
  return loss.detach(), logits.detach()


# --- flax -> PyTorch weights ---


def load_flax_variables(torch_model: nn.Module, variables: Mapping[str, Any]) -> None:
  """Copies flax params and batch_stats into torch_model, in place.

  The names and layouts are resnet_jax.export's (the state dict --mode=export writes); the
  model's num_batches_tracked counters are left as they are.

  Args:
    torch_model: a model of this module, of the same architecture.
    variables: {'params': ..., 'batch_stats': ...} from resnet_jax.models.

  Raises:
    KeyError: a flax variable has no PyTorch counterpart, or the reverse.
    RuntimeError: a shape differs (from load_state_dict).
  """
  state = torch_model.state_dict()
  ours = export.torch_state_dict(variables)
  unknown = sorted(set(ours) - set(state))
  if unknown:
    raise KeyError(f'flax variables map to {", ".join(unknown)}, which the PyTorch model lacks')
  # num_batches_tracked has no flax counterpart and does not affect outputs.
  missing = sorted(k for k in state if k not in ours and not k.endswith('num_batches_tracked'))
  if missing:
    raise KeyError(f'no flax variable for PyTorch {", ".join(missing)}')
  state.update({key: torch.from_numpy(value) for key, value in ours.items()})
  torch_model.load_state_dict(state)
