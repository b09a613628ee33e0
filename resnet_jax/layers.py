"""What every family of resnet_jax's nets is built from: PyTorch-matching convolutions, BatchNorm
(whole-batch or ghost), initialisers, and the scanned form of a stage's identical blocks.

BatchNorm matches PyTorch's (flax momentum 0.9 is PyTorch momentum 0.1, epsilon 1e-5) except that
flax keeps the biased running variance while PyTorch keeps the unbiased one, a factor n/(n-1)
with n = batch x H x W: negligible.
"""

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any

# Explicit padding: 'SAME' pads a stride-2 3x3 conv only on the bottom/right,
# where PyTorch's padding=1 pads both sides.
PAD_3X3 = ((1, 1), (1, 1))

# akamaster's kaiming_normal_: std sqrt(2 / fan_in), not truncated.
he_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
# PyTorch's default kaiming_uniform_(a=sqrt(5)): U(+-1 / sqrt(fan_in)).
torch_default = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
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


# The Torch nets of He et al. 2016 and Zagoruyko's WRN (and their PyTorch ports) draw conv
# kernels from N(0, 2 / (k * k * out_channels)): He normal over the fan-out.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def conv_factory(kernel_init: Callable[..., jax.Array], dtype: Any) -> ModuleDef:
  """Bias-free convolutions computing in dtype with float32 parameters, as every family uses."""
  return functools.partial(
    nn.Conv, use_bias=False, kernel_init=kernel_init, dtype=dtype, param_dtype=jnp.float32
  )


def norm_factory(train: bool, dtype: Any, bn_group_size: int) -> ModuleDef:
  """PyTorch's BatchNorm2d: statistics of the batch in training (of groups of bn_group_size
  examples when set), the running ones in evaluation."""
  if bn_group_size:
    norm = functools.partial(GhostBatchNorm, bn_group_size)
  else:
    norm = functools.partial(nn.BatchNorm, use_fast_variance=False)
  return functools.partial(
    norm,
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=dtype,
    param_dtype=jnp.float32,
  )


# A scanned stack of a stage's identical blocks is named after its first block plus this suffix;
# its variables carry a leading axis, one entry per block.
_SCAN_SUFFIX = '_scan'
_SCANNED = re.compile(rf'^(.*_)(\d+){_SCAN_SUFFIX}$')


def stage(
  block_cls: type[nn.Module],
  block_args: Mapping[str, Any],
  x: jax.Array,
  count: int,
  name: Callable[..., str],
  *,
  first_strides: int,
  scan: bool,
  remat: bool,
) -> jax.Array:
  """A stage of `count` blocks block_cls(**block_args), the first with strides=first_strides.

  name(block=j) names block j. Unrolled, every block is its own module. With scan, the blocks
  after the first (identical: they keep the shape) are one nn.scan over a module named
  name(block=1) + '_scan' whose variables stack theirs on a leading axis, so XLA compiles one
  block for them instead of count - 1 (unscanned() gives back the unrolled names). remat
  recomputes each block's activations in the backward pass instead of keeping them.
  """
  cls = nn.remat(block_cls) if remat else block_cls
  x = cls(**block_args, strides=first_strides, name=name(block=0))(x)
  if not scan:
    for j in range(1, count):
      x = cls(**block_args, name=name(block=j))(x)
    return x
  if count == 1:
    return x

  def body(module, carry, _):
    return module(carry), None

  scanned = nn.scan(
    nn.remat(body) if remat else body,
    variable_axes={'params': 0, 'batch_stats': 0},
    split_rngs={'params': True, 'dropout': True},
    length=count - 1,
  )
  x, _ = scanned(block_cls(**block_args, name=name(block=1) + _SCAN_SUFFIX), x, None)
  return x


def unscanned(tree: Mapping[str, Any]) -> dict[str, Any]:
  """A collection of variables (params or batch_stats) with each scanned stack of blocks
  replaced by the blocks it stacks, under the names the unrolled form gives them."""
  out = {}
  for key, value in tree.items():
    match = _SCANNED.match(key)
    if match is None:
      out[key] = unscanned(value) if isinstance(value, Mapping) else value
      continue
    prefix, first = match.group(1), int(match.group(2))
    count = jax.tree.leaves(value)[0].shape[0]
    for k in range(count):
      out[f'{prefix}{first + k}'] = jax.tree.map(lambda leaf, k=k: leaf[k], unscanned(value))
  return out
