"""Augmentation really crops and flips, keeps shapes and dtypes, and normalises per channel."""

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax import augment


def _distinct_images(batch):
  # Every pixel of every image different, so any crop or flip is detectable.
  return jnp.arange(batch * 32 * 32 * 3, dtype=jnp.int32).reshape(batch, 32, 32, 3) % 251


def test_crop_and_flip_keeps_shape_and_dtype():
  images = _distinct_images(16).astype(jnp.uint8)
  out = augment.crop_and_flip(images, jax.random.key(0))
  assert out.shape == images.shape and out.dtype == jnp.uint8


def test_each_output_is_a_shifted_and_maybe_flipped_window_of_the_padded_input():
  images = np.asarray(_distinct_images(64))
  out = np.asarray(augment.crop_and_flip(jnp.asarray(images), jax.random.key(1)))
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  found = {'offsets': set(), 'flips': set()}
  for i in range(len(images)):
    matches = [
      (dy, dx, flip)
      for dy in range(9)
      for dx in range(9)
      for flip in (False, True)
      if np.array_equal(
        out[i], (lambda w: w[:, ::-1] if flip else w)(padded[i, dy : dy + 32, dx : dx + 32])
      )
    ]
    assert len(matches) == 1, f'example {i} is not a single crop of its padded image'
    dy, dx, flip = matches[0]
    found['offsets'].add((dy, dx))
    found['flips'].add(flip)
  assert found['flips'] == {False, True}
  assert len(found['offsets']) > 20  # offsets spread over the 9x9 choices


def test_same_key_same_augmentation_other_key_other():
  images = _distinct_images(8)
  a = augment.crop_and_flip(images, jax.random.key(3))
  b = augment.crop_and_flip(images, jax.random.key(3))
  c = augment.crop_and_flip(images, jax.random.key(4))
  assert jnp.array_equal(a, b) and not jnp.array_equal(a, c)


def test_normalize_standardises_each_channel():
  mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 5.0)
  images = jnp.broadcast_to(jnp.asarray([12, 28, 20], jnp.uint8), (2, 32, 32, 3))
  out = augment.normalize(images, mean, std)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 2.0, -2.0])
