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

BatchNorm matches PyTorch's (flax momentum 0.9 is PyTorch momentum 0.1, epsilon
1e-5) except that flax keeps the biased running variance while PyTorch keeps
the unbiased one, a factor n/(n-1) with n = batch x H x W: negligible.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any

# Explicit padding: 'SAME' pads a stride-2 3x3 conv only on the bottom/right,
# where PyTorch's padding=1 pads both sides.
_PAD_3X3 = ((1, 1), (1, 1))

# akamaster's kaiming_normal_: std sqrt(2 / fan_in), not truncated.
_he_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
# PyTorch's default kaiming_uniform_(a=sqrt(5)): U(+-1 / sqrt(fan_in)).
_torch_default = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def _torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
  """PyTorch's default nn.Linear bias init: U(+-1 / sqrt(fan_in))."""
  bound = 1 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class GhostBatchNorm(nn.Module):
  """BatchNorm whose training statistics come from groups of `group_size` examples.

  The variables are nn.BatchNorm's (params scale and bias, batch_stats mean and var), so
  checkpoints move between the two. Each group is normalised by its own mean and biased
  variance; the running averages move towards the mean over the groups of their statistics.
  When a group is exactly one device's share of the batch, no statistic crosses devices.
  """

  group_size: int
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scale_init: Callable[..., jax.Array] = nn.initializers.ones
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (features,), self.param_dtype)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    x32 = x.astype(jnp.float32)  # statistics in float32 whatever the compute dtype, as flax's
    if self.use_running_average:
      y = (x32 - running_mean.value) * jax.lax.rsqrt(running_var.value + self.epsilon)
    else:
      groups = x32.reshape(x.shape[0] // self.group_size, self.group_size, *x.shape[1:])
      axes = tuple(range(1, groups.ndim - 1))
      mean = groups.mean(axes, keepdims=True)
      var = jnp.square(groups - mean).mean(axes, keepdims=True)
      y = ((groups - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
      if not self.is_initializing():
        for stat, value in ((running_mean, mean), (running_var, var)):
          stat.value = self.momentum * stat.value + (1 - self.momentum) * value.reshape(
            -1, features
          ).mean(0)
    return (y * scale + bias).astype(self.dtype)


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
    y = self.conv(self.filters, (3, 3), self.strides, padding=_PAD_3X3, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=_PAD_3X3, name='conv2')(y)
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
    y = self.conv(self.filters, (3, 3), self.strides, padding=_PAD_3X3, name='conv2')(y)
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
    conv = functools.partial(
      nn.Conv,
      use_bias=False,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      param_dtype=jnp.float32,
    )
    if self.bn_group_size:
      norm = functools.partial(GhostBatchNorm, self.bn_group_size)
    else:
      norm = functools.partial(nn.BatchNorm, use_fast_variance=False)
    norm = functools.partial(
      norm,
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=self.dtype,
      param_dtype=jnp.float32,
    )
    x = conv(self.stage_filters[0], (3, 3), padding=_PAD_3X3, name='conv1')(x)
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
      bias_init=_torch_bias_init(x.shape[-1]),
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name='linear',
    )(x)
    return x.astype(jnp.float32)


_PaperNet = functools.partial(
  ResNet, stage_filters=(16, 32, 64), block_cls=BasicBlock, kernel_init=_he_normal, shortcut='A'
)
_KuangliuNet = functools.partial(
  ResNet, stage_filters=(64, 128, 256, 512), kernel_init=_torch_default, shortcut='B'
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
}

MODEL_NAMES = tuple(sorted(_REGISTRY))

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def shortcut_choices(name: str) -> tuple[str, ...]:
  """The shortcuts a registered model can be built with: A or B for the paper's nets (A is
  published), B for resnet18/34/50, none for the plain nets."""
  published = _REGISTRY[name].keywords['shortcut']
  return {'A': ('A', 'B'), 'B': ('B',), None: ()}[published]


def get_model(
  name: str,
  num_classes: int,
  *,
  dtype: str = 'float32',
  shortcut: str = '',
  zero_init_residual: bool = False,
  bn_group_size: int = 0,
) -> nn.Module:
  """Builds a registered model from validated settings (resnet_jax.validation checks them).

  Args:
    name: one of MODEL_NAMES.
    num_classes: size of the logits.
    dtype: 'float32' or 'bfloat16', the computation dtype; parameters stay float32.
    shortcut: '' for the model's published shortcut, else one of shortcut_choices(name).
    zero_init_residual: zero the scale of each block's last BatchNorm.
    bn_group_size: BatchNorm statistics over groups of that many examples; 0, the whole batch.

  Returns:
    An unbound module; call it as model.apply(variables, images, train=...).
  """
  overrides = {'shortcut': shortcut} if shortcut else {}
  return _REGISTRY[name](
    num_classes=num_classes,
    dtype=DTYPES[dtype],
    zero_init_residual=zero_init_residual,
    bn_group_size=bn_group_size,
    **overrides,
  )
