"""On-device, jit-able CIFAR augmentation: random crop from a 4-pixel zero pad, flip, normalise.

Everything here runs inside the jitted train step, on whatever devices hold the batch, so no
host pipeline sits between the dataset (already on the device) and the model.
"""

import jax
import jax.numpy as jnp

PAD = 4


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
  """uint8 NHWC images -> float32, per-channel standardised (mean and std on the 0-255 scale)."""
  images = images.astype(jnp.float32)
  return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def crop_and_flip(images: jax.Array, key: jax.Array) -> jax.Array:
  """Random 32x32 crop of each image zero-padded by 4 pixels a side, and a random horizontal flip.

  The standard CIFAR augmentation (torchvision's RandomCrop(32, padding=4) and
  RandomHorizontalFlip()), drawn independently per example. Keeps shape and dtype.
  """
  batch, height, width, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * PAD + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
  padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))

  def crop_one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(crop_one)(padded, offsets, flips)
