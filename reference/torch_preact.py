"""PyTorch references of the pre-activation and wide ResNets (resnet_jax/preact.py ports them).

* preact_resnet18(): kuangliu/pytorch-cifar models/preact_resnet.py, copied (PreActBlock,
  PreActResNet).
* preact_resnet164(), preact_resnet1001(): a PyTorch port of KaimingHe/resnet-1k-layers
  resnet-pre-act.lua (Torch7), the code of He et al. 2016's CIFAR nets. The port keeps the lua's
  structure, strides (on a unit's first 1x1 conv) and init (conv N(0, 2 / (k * k * out)),
  BatchNorm 1 and 0, Linear bias 0; the lua's convs have no bias under cuDNN >= 4, the version
  it ran with); Torch7's default Linear weight, U(+-1 / sqrt(in)), is PyTorch's too. The
  attribute names are chosen here, as kuangliu's (conv1, layer{stage}, bn1..bn3, conv1..conv3,
  shortcut.0, linear) plus `bn` for the final BatchNorm. The lua builds CIFAR-10's 10 classes;
  num_classes generalises it.
* wrn16_8(), wrn28_10(): xternalz/WideResNet-pytorch wideresnet.py, copied, with two fixes for
  Python 3 and today's PyTorch: `n = (depth - 4) // 6` (the original's `/` gives a float that
  range() refuses), and BasicBlock.forward's `a and t or x` choices as if/else (`t or x` asks
  for a tensor's truth value, which PyTorch refuses).

resnet_jax's scanned stacks of blocks map onto these per-block names through
resnet_jax.layers.unscanned (resnet_jax.export applies it).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# --- kuangliu/pytorch-cifar models/preact_resnet.py ---


class PreActBlock(nn.Module):
  expansion = 1

  def __init__(self, in_planes, planes, stride=1):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_planes)
    self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)

    if stride != 1 or in_planes != self.expansion * planes:
      self.shortcut = nn.Sequential(
        nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
      )

  def forward(self, x):
    out = F.relu(self.bn1(x))
    shortcut = self.shortcut(out) if hasattr(self, 'shortcut') else x
    out = self.conv1(out)
    out = self.conv2(F.relu(self.bn2(out)))
    out += shortcut
    return out


class PreActResNet(nn.Module):
  def __init__(self, block, num_blocks, num_classes=10):
    super().__init__()
    self.in_planes = 64

    self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
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
    out = self.conv1(x)
    out = self.layer1(out)
    out = self.layer2(out)
    out = self.layer3(out)
    out = self.layer4(out)
    out = F.avg_pool2d(out, 4)
    out = out.view(out.size(0), -1)
    out = self.linear(out)
    return out


def preact_resnet18(num_classes: int = 10) -> PreActResNet:
  return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes)


# --- KaimingHe/resnet-1k-layers resnet-pre-act.lua, ported ---


def _lua_conv(in_planes, out_planes, kernel_size, stride=1):
  return nn.Conv2d(
    in_planes, out_planes, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
  )


class HeBottleneck(nn.Module):
  """The lua's `bottleneck(nInputPlane, nOutputPlane, stride)`: BN-ReLU before each conv; a unit
  whose shape changes shares its first BN-ReLU with its 1x1 conv shortcut."""

  def __init__(self, in_planes, out_planes, stride):
    super().__init__()
    planes = out_planes // 4
    self.bn1 = nn.BatchNorm2d(in_planes)
    self.conv1 = _lua_conv(in_planes, planes, 1, stride)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = _lua_conv(planes, planes, 3)
    self.bn3 = nn.BatchNorm2d(planes)
    self.conv3 = _lua_conv(planes, out_planes, 1)
    if in_planes != out_planes:
      self.shortcut = nn.Sequential(_lua_conv(in_planes, out_planes, 1, stride))

  def forward(self, x):
    out = F.relu(self.bn1(x))
    shortcut = self.shortcut(out) if hasattr(self, 'shortcut') else x
    out = self.conv1(out)
    out = self.conv2(F.relu(self.bn2(out)))
    out = self.conv3(F.relu(self.bn3(out)))
    return out + shortcut


class HePreActResNet(nn.Module):
  """The lua's createModel for CIFAR: depth 9n + 2 (164, 1001 in the paper)."""

  def __init__(self, depth, num_classes=10):
    super().__init__()
    assert (depth - 2) % 9 == 0, 'depth should be 9n+2 (e.g., 164 or 1001 in the paper)'
    n = (depth - 2) // 9
    stages = [16, 64, 128, 256]
    self.conv1 = _lua_conv(3, stages[0], 3)
    self.layer1 = self._make_layer(stages[0], stages[1], n, 1)
    self.layer2 = self._make_layer(stages[1], stages[2], n, 2)
    self.layer3 = self._make_layer(stages[2], stages[3], n, 2)
    self.bn = nn.BatchNorm2d(stages[3])
    self.linear = nn.Linear(stages[3], num_classes)

    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        m.weight.data.normal_(0, math.sqrt(2 / fan_out))
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.data.fill_(1)
        m.bias.data.zero_()
    self.linear.bias.data.zero_()

  @staticmethod
  def _make_layer(in_planes, out_planes, count, stride):
    units = [HeBottleneck(in_planes, out_planes, stride)]
    units += [HeBottleneck(out_planes, out_planes, 1) for _ in range(count - 1)]
    return nn.Sequential(*units)

  def forward(self, x):
    out = self.conv1(x)
    out = self.layer3(self.layer2(self.layer1(out)))
    out = F.relu(self.bn(out))
    out = F.avg_pool2d(out, 8)
    return self.linear(out.view(out.size(0), -1))


def preact_resnet164(num_classes: int = 10) -> HePreActResNet:
  return HePreActResNet(164, num_classes)


def preact_resnet1001(num_classes: int = 10) -> HePreActResNet:
  return HePreActResNet(1001, num_classes)


# --- xternalz/WideResNet-pytorch wideresnet.py ---


class BasicBlock(nn.Module):
  def __init__(self, in_planes, out_planes, stride, dropRate=0.0):  # noqa: N803 (original names)
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_planes)
    self.relu1 = nn.ReLU(inplace=True)
    self.conv1 = nn.Conv2d(
      in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False
    )
    self.bn2 = nn.BatchNorm2d(out_planes)
    self.relu2 = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
    self.droprate = dropRate
    self.equalInOut = in_planes == out_planes
    self.convShortcut = (
      (not self.equalInOut)
      and nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)
      or None
    )

  def forward(self, x):
    if not self.equalInOut:
      x = self.relu1(self.bn1(x))
    else:
      out = self.relu1(self.bn1(x))
    out = self.conv1(out if self.equalInOut else x)
    if self.droprate > 0:
      out = F.dropout(out, p=self.droprate, training=self.training)
    out = self.conv2(self.relu2(self.bn2(out)))
    return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
  def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):  # noqa: N803
    super().__init__()
    self.layer = self._make_layer(block, in_planes, out_planes, nb_layers, stride, dropRate)

  def _make_layer(self, block, in_planes, out_planes, nb_layers, stride, dropRate):  # noqa: N803
    layers = []
    for i in range(nb_layers):
      layers.append(
        block(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1, dropRate)
      )
    return nn.Sequential(*layers)

  def forward(self, x):
    return self.layer(x)


class WideResNet(nn.Module):
  def __init__(self, depth, num_classes, width=1, dropRate=0.0):  # noqa: N803
    super().__init__()
    nChannels = [16, 16 * width, 32 * width, 64 * width]  # noqa: N806
    assert (depth - 4) % 6 == 0
    n = (depth - 4) // 6
    block = BasicBlock
    # 1st conv before any network block
    self.conv1 = nn.Conv2d(3, nChannels[0], kernel_size=3, stride=1, padding=1, bias=False)
    # 1st block
    self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], block, 1, dropRate)
    # 2nd block
    self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], block, 2, dropRate)
    # 3rd block
    self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], block, 2, dropRate)
    # global average pooling and classifier
    self.bn1 = nn.BatchNorm2d(nChannels[3])
    self.relu = nn.ReLU(inplace=True)
    self.fc = nn.Linear(nChannels[3], num_classes)
    self.nChannels = nChannels[3]

    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        m.weight.data.normal_(0, math.sqrt(2.0 / n))
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.data.fill_(1)
        m.bias.data.zero_()
      elif isinstance(m, nn.Linear):
        m.bias.data.zero_()

  def forward(self, x):
    out = self.conv1(x)
    out = self.block1(out)
    out = self.block2(out)
    out = self.block3(out)
    out = self.relu(self.bn1(out))
    out = F.avg_pool2d(out, 8)
    out = out.view(-1, self.nChannels)
    return self.fc(out)


def wrn16_8(num_classes: int = 10, dropout_rate: float = 0.0) -> WideResNet:
  return WideResNet(16, num_classes, 8, dropout_rate)


def wrn28_10(num_classes: int = 10, dropout_rate: float = 0.0) -> WideResNet:
  return WideResNet(28, num_classes, 10, dropout_rate)
