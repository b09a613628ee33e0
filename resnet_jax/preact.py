"""Pre-activation and wide ResNets for 32x32 CIFAR images, in flax.linen (NHWC).

Each family ports public code, so results compare directly:

* preact_resnet18: PreActResNet18 of kuangliu/pytorch-cifar models/preact_resnet.py: ResNet-18's
  stages (64/128/256/512 channels) with BatchNorm and ReLU before each convolution (He et al.
  2016, Identity Mappings in Deep Residual Networks), no BatchNorm after the last stage,
  PyTorch's default init.
* preact_resnet164, preact_resnet1001: that paper's CIFAR bottleneck nets as
  KaimingHe/resnet-1k-layers resnet-pre-act.lua builds them: 9n+2 layers (n = 18 and 111 units
  per stage), a 16-channel 3x3 stem, three stages of bottleneck units with 64/128/256 outputs
  (a quarter of that inside), the stride on a stage's first 1x1 conv, a final BatchNorm and
  ReLU; conv kernels N(0, 2 / (k * k * out_channels)), a zero Dense bias.
* wrn16_8, wrn28_10: WRN-depth-width of xternalz/WideResNet-pytorch wideresnet.py (Zagoruyko
  and Komodakis 2016): a 16-channel stem, three stages of (depth - 4) / 6 pre-activation basic
  blocks with 16/32/64 x width channels, dropout between a block's two convs when asked, a final
  BatchNorm and ReLU; the lua net's init.

A block whose shape changes projects with a 1x1 conv (no BatchNorm) applied, like its first
conv, after its first BatchNorm and ReLU; the others add their raw input. Submodule names mirror
the references' attribute names (reference/torch_preact.py). Every stage's blocks after its first
are identical, so they may be a scanned stack (scan_blocks; layers.stage).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax import layers
from resnet_jax.layers import PAD_3X3, ModuleDef


class PreActBasicBlock(nn.Module):
  """BN-ReLU-conv3x3 twice (the first conv strides), dropout between them when given."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  dropout: ModuleDef | None = None
  shortcut_name: str = 'shortcut_conv'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = nn.relu(self.norm(name='bn1')(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters:
      shortcut = self.conv(
        self.filters, (1, 1), self.strides, padding='VALID', name=self.shortcut_name
      )(out)
    y = self.conv(self.filters, (3, 3), self.strides, padding=PAD_3X3, name='conv1')(out)
    if self.dropout is not None:
      y = self.dropout()(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters, (3, 3), padding=PAD_3X3, name='conv2')(y)
    return y + shortcut


class PreActBottleneck(nn.Module):
  """BN-ReLU before each of 1x1 (strided) reduce, 3x3, 1x1 expand to 4 x filters."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  shortcut_name: str = 'shortcut_conv'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = nn.relu(self.norm(name='bn1')(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters * 4:
      shortcut = self.conv(
        self.filters * 4, (1, 1), self.strides, padding='VALID', name=self.shortcut_name
      )(out)
    y = self.conv(self.filters, (1, 1), self.strides, padding='VALID', name='conv1')(out)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters, (3, 3), padding=PAD_3X3, name='conv2')(y)
    y = nn.relu(self.norm(name='bn3')(y))
    return self.conv(self.filters * 4, (1, 1), padding='VALID', name='conv3')(y) + shortcut


class PreActResNet(nn.Module):
  """3x3 conv stem, stages of pre-activation blocks, [BN-ReLU], average pool, Dense.

  layer_name: a block's module name from its 1-based stage and 0-based index in it.
  scan_blocks: each stage's blocks after the first as one nn.scan (compiled once, not once per
  block); remat: recompute each block's activations in the backward pass instead of keeping them.
  Logits are float32.
  """

  stage_sizes: Sequence[int]
  stage_filters: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  kernel_init: Callable[..., jax.Array]
  stem_filters: int
  final_norm: bool
  zero_dense_bias: bool  # else PyTorch's default U(+-1 / sqrt(fan_in))
  layer_name: str = 'layer{stage}_{block}'
  shortcut_name: str = 'shortcut_conv'
  final_norm_name: str = 'bn'
  dense_name: str = 'linear'
  dropout_rate: float = 0.0
  scan_blocks: bool = False
  remat: bool = False
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # 0: BatchNorm statistics over the whole batch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = layers.norm_factory(train, self.dtype, self.bn_group_size)
    conv = layers.conv_factory(self.kernel_init, self.dtype)
    block_args = {'conv': conv, 'norm': norm, 'shortcut_name': self.shortcut_name}
    if self.dropout_rate:
      block_args['dropout'] = functools.partial(
        nn.Dropout, self.dropout_rate, deterministic=not train
      )
    x = conv(self.stem_filters, (3, 3), padding=PAD_3X3, name='conv1')(x)
    for i, (num_blocks, filters) in enumerate(zip(self.stage_sizes, self.stage_filters)):
      x = layers.stage(
        self.block_cls,
        {'filters': filters, **block_args},
        x,
        num_blocks,
        functools.partial(self.layer_name.format, stage=i + 1),
        first_strides=2 if i > 0 else 1,
        scan=self.scan_blocks,
        remat=self.remat,
      )
    if self.final_norm:
      x = nn.relu(norm(name=self.final_norm_name)(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(
      self.num_classes,
      kernel_init=layers.torch_default,
      bias_init=nn.initializers.zeros
      if self.zero_dense_bias
      else layers.torch_bias_init(x.shape[-1]),
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name=self.dense_name,
    )(x)
    return x.astype(jnp.float32)


# The options each net takes, with their defaults (models.model_options reads them here).
_OPTIONS = {'scan_blocks': False, 'remat': False}

_KuangliuPreAct = functools.partial(
  PreActResNet,
  block_cls=PreActBasicBlock,
  stage_filters=(64, 128, 256, 512),
  stem_filters=64,
  kernel_init=layers.torch_default,
  final_norm=False,
  zero_dense_bias=False,
  **_OPTIONS,
)
_He2016 = functools.partial(
  PreActResNet,
  block_cls=PreActBottleneck,
  stage_filters=(16, 32, 64),
  stem_filters=16,
  kernel_init=layers.he_normal_fan_out,
  final_norm=True,
  zero_dense_bias=True,
  **_OPTIONS,
)


def wide(depth: int, width: int) -> Callable[..., nn.Module]:
  """WRN-depth-width (depth 6n + 4), unbuilt: call it with num_classes and the options."""
  return functools.partial(
    PreActResNet,
    block_cls=PreActBasicBlock,
    stage_sizes=((depth - 4) // 6,) * 3,
    stage_filters=(16 * width, 32 * width, 64 * width),
    stem_filters=16,
    kernel_init=layers.he_normal_fan_out,
    final_norm=True,
    zero_dense_bias=True,
    layer_name='block{stage}_layer_{block}',
    shortcut_name='convShortcut',
    final_norm_name='bn1',
    dense_name='fc',
    dropout_rate=0.0,
    **_OPTIONS,
  )


REGISTRY = {
  'preact_resnet18': functools.partial(_KuangliuPreAct, stage_sizes=(2, 2, 2, 2)),
  'preact_resnet164': functools.partial(_He2016, stage_sizes=(18,) * 3),
  'preact_resnet1001': functools.partial(_He2016, stage_sizes=(111,) * 3),
  'wrn16_8': wide(16, 8),
  'wrn28_10': wide(28, 10),
}
