"""Residual networks for 32x32 CIFAR images, in flax.linen (NHWC).

Each family ports a published PyTorch model, so results compare directly:

* resnet20/32/44/56/110: the CIFAR nets of He et al. 2015 (Deep Residual
  Learning for Image Recognition, section 4.2) as in akamaster/
  pytorch_resnet_cifar10 resnet.py. 6n+2 layers: a 3x3 conv stem and three
  stages of n basic blocks with 16/32/64 channels. Shortcut option A (the
  paper's default) subsamples and zero-pads channels, without parameters;
  option B projects with 1x1 conv + BN where the shape changes. He normal init.
* plain20/32/44/56/110: the same nets without shortcuts, the paper's
  degradation baselines.
* resnet18/34/50: ImageNet ResNets adapted to CIFAR as in kuangliu/
  pytorch-cifar models/resnet.py: 3x3 stride-1 stem, no max-pool, stages of
  64/128/256/512 channels, projection shortcuts, PyTorch's default init.
* resnet_test: a tiny resnet8 with 4/8/16 channels, for fast tests.

Submodule names (conv1, bn1, layer{stage}_{block}, shortcut_conv, shortcut_bn,
linear) mirror the PyTorch attribute names, so weights map one-to-one onto the
references in reference/torch_models.py.

The pre-activation and wide nets (preact_resnet18/164/1001, wrn16_8/28_10) are
in resnet_jax/preact.py, registered here; the pieces every family shares, with
BatchNorm's one difference from PyTorch's, in resnet_jax/layers.py.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax import preact
from resnet_jax.layers import (
  PAD_3X3,
  ModuleDef,
  conv_factory,
  he_normal,
  norm_factory,
  torch_bias_init,
  torch_default,
)


def _shortcut(
  x: jax.Array, filters: int, strides: int, kind: str, conv: ModuleDef, norm: ModuleDef
) -> jax.Array:
  """The identity, or what replaces it where the block changes the shape."""
  if strides == 1 and x.shape[-1] == filters:
    return x
  if kind == 'A':
    # akamaster's LambdaLayer: subsample, zero-pad the new channels evenly.
    extra = filters - x.shape[-1]
    pad = (extra // 2, extra - extra // 2)
    return jnp.pad(x[:, ::strides, ::strides, :], ((0, 0), (0, 0), (0, 0), pad))
  x = conv(filters, (1, 1), strides, padding='VALID', name='shortcut_conv')(x)
  return norm(name='shortcut_bn')(x)


def _last_norm_scale_init(zero_init_residual: bool) -> Callable[..., jax.Array]:
  # A zero scale makes each block start as its shortcut (Goyal et al. 2017).
  return nn.initializers.zeros if zero_init_residual else nn.initializers.ones


class BasicBlock(nn.Module):
  """Two 3x3 convs; the first one strides. shortcut=None gives a plain block."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  shortcut: str | None
  strides: int = 1
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv(self.filters, (3, 3), self.strides, padding=PAD_3X3, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=PAD_3X3, name='conv2')(y)
    y = self.norm(scale_init=_last_norm_scale_init(self.zero_init_residual), name='bn2')(y)
    if self.shortcut is not None:
      y += _shortcut(x, self.filters, self.strides, self.shortcut, self.conv, self.norm)
    return nn.relu(y)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand to 4 x filters."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  shortcut: str | None
  strides: int = 1
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv(self.filters, (1, 1), padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), self.strides, padding=PAD_3X3, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters * 4, (1, 1), padding='VALID', name='conv3')(y)
    y = self.norm(scale_init=_last_norm_scale_init(self.zero_init_residual), name='bn3')(y)
    if self.shortcut is not None:
      y += _shortcut(x, self.filters * 4, self.strides, self.shortcut, self.conv, self.norm)
    return nn.relu(y)


class ResNet(nn.Module):
  """3x3 conv stem, stages of blocks, average pool, Dense; float32 logits."""

  stage_sizes: Sequence[int]
  stage_filters: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  kernel_init: Callable[..., jax.Array]
  shortcut: str | None = 'B'
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # 0: BatchNorm statistics over the whole batch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = conv_factory(self.kernel_init, self.dtype)
    norm = norm_factory(train, self.dtype, self.bn_group_size)
    x = conv(self.stage_filters[0], (3, 3), padding=PAD_3X3, name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    for i, (num_blocks, filters) in enumerate(zip(self.stage_sizes, self.stage_filters)):
      for j in range(num_blocks):
        x = self.block_cls(
          filters,
          conv=conv,
          norm=norm,
          shortcut=self.shortcut,
          strides=2 if i > 0 and j == 0 else 1,
          zero_init_residual=self.zero_init_residual,
          name=f'layer{i + 1}_{j}',
        )(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(
      self.num_classes,
      kernel_init=self.kernel_init,
      bias_init=torch_bias_init(x.shape[-1]),
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name='linear',
    )(x)
    return x.astype(jnp.float32)


_PaperNet = functools.partial(
  ResNet,
  stage_filters=(16, 32, 64),
  block_cls=BasicBlock,
  kernel_init=he_normal,
  shortcut='A',
  zero_init_residual=False,
)
_KuangliuNet = functools.partial(
  ResNet,
  stage_filters=(64, 128, 256, 512),
  kernel_init=torch_default,
  shortcut='B',
  zero_init_residual=False,
)

_REGISTRY = {
  **{
    f'resnet{6 * n + 2}': functools.partial(_PaperNet, stage_sizes=(n,) * 3)
    for n in (3, 5, 7, 9, 18)
  },
  **{
    f'plain{6 * n + 2}': functools.partial(_PaperNet, stage_sizes=(n,) * 3, shortcut=None)
    for n in (3, 5, 7, 9, 18)
  },
  'resnet18': functools.partial(_KuangliuNet, block_cls=BasicBlock, stage_sizes=(2, 2, 2, 2)),
  'resnet34': functools.partial(_KuangliuNet, block_cls=BasicBlock, stage_sizes=(3, 4, 6, 3)),
  'resnet50': functools.partial(_KuangliuNet, block_cls=Bottleneck, stage_sizes=(3, 4, 6, 3)),
  'resnet_test': functools.partial(_PaperNet, stage_sizes=(1, 1, 1), stage_filters=(4, 8, 16)),
  **preact.REGISTRY,
}

MODEL_NAMES = tuple(sorted(_REGISTRY))

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


# Settings only some families take; each registry entry names those it takes, with its default.
OPTIONS = ('zero_init_residual', 'dropout_rate', 'scan_blocks', 'remat')


def shortcut_choices(name: str) -> tuple[str, ...]:
  """The shortcuts a registered model can be built with: A or B for the paper's nets (A is
  published), B for the others (a projection where the shape changes), none for the plain nets."""
  published = _REGISTRY[name].keywords.get('shortcut', 'B')
  return {'A': ('A', 'B'), 'B': ('B',), None: ()}[published]


def model_options(name: str) -> tuple[str, ...]:
  """Which of OPTIONS a registered model takes."""
  return tuple(option for option in OPTIONS if option in _REGISTRY[name].keywords)


def get_model(
  name: str,
  num_classes: int,
  *,
  dtype: str = 'float32',
  shortcut: str = '',
  bn_group_size: int = 0,
  zero_init_residual: bool = False,
  dropout_rate: float = 0.0,
  scan_blocks: bool = False,
  remat: bool = False,
) -> nn.Module:
  """Builds a registered model from validated settings (resnet_jax.validation checks them).

  Args:
    name: one of MODEL_NAMES.
    num_classes: size of the logits.
    dtype: 'float32' or 'bfloat16', the computation dtype; parameters stay float32.
    shortcut: '' for the model's published shortcut, else one of shortcut_choices(name).
    bn_group_size: BatchNorm statistics over groups of that many examples; 0, the whole batch.
    The OPTIONS, each only for a model that takes it (model_options(name)) unless left at
    its default:
    zero_init_residual: zero the scale of each block's last BatchNorm.
    dropout_rate: dropout between each block's two convs, in training.
    scan_blocks: each stage's blocks after its first as one scanned stack (one compiled block).
    remat: recompute each block's activations in the backward pass instead of keeping them.

  Returns:
    An unbound module; call it as model.apply(variables, images, train=...), in training with
    rngs={'dropout': key} when dropout_rate is set.
  """
  entry = _REGISTRY[name]
  options = {
    'zero_init_residual': zero_init_residual,
    'dropout_rate': dropout_rate,
    'scan_blocks': scan_blocks,
    'remat': remat,
  }
  overrides = {option: value for option, value in options.items() if value}
  # The families without a 'shortcut' field always project: B is their published choice.
  if shortcut and 'shortcut' in entry.keywords:
    overrides['shortcut'] = shortcut
  return entry(
    num_classes=num_classes, dtype=DTYPES[dtype], bn_group_size=bn_group_size, **overrides
  )
