"""On-device, jit-able CIFAR augmentation: random crop from a 4-pixel zero pad, flip, normalise,
cutout.

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


def cutout(images: jax.Array, key: jax.Array, size: int) -> jax.Array:
  """Zeroes one size x size square of each NHWC image (DeVries & Taylor 2017, arXiv:1708.04552).

  As uoguelph-mlrg/Cutout's util/cutout.py: the centre (y, x) is uniform over the image's
  pixels, and rows y - size // 2 to y + size // 2 (exclusive) and likewise columns are zeroed,
  clipped at the borders, so a square near an edge is partly outside the image (an odd size
  zeroes size - 1). Drawn independently per example; keeps shape and dtype. Training applies it
  after normalisation, as that code does, so the square is the dataset's mean colour.
  """
  batch, height, width, _ = images.shape
  centres = jax.random.randint(key, (batch, 2), 0, jnp.asarray([height, width]))

  def band(centre: jax.Array, length: int) -> jax.Array:
    # (batch, length): whether each row (or column) lies in the example's square.
    pixels = jnp.arange(length)
    return (pixels >= centre[:, None] - size // 2) & (pixels < centre[:, None] + size // 2)

  square = band(centres[:, 0], height)[:, :, None] & band(centres[:, 1], width)[:, None, :]
  return jnp.where(square[..., None], jnp.zeros((), images.dtype), images)
