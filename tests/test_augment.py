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


def _cutout_squares(images, key, size):
  """Per example of the cutout of all-ones images: the (rows, columns) ranges it zeroed."""
  out = np.asarray(augment.cutout(images, key, size))
  squares = []
  for example in out:
    zero = example == 0
    # Every channel alike, and the zeros a rectangle: its rows times its columns.
    assert (zero == zero[..., :1]).all()
    rows, columns = np.flatnonzero(zero[..., 0].any(1)), np.flatnonzero(zero[..., 0].any(0))
    assert zero[..., 0].sum() == len(rows) * len(columns)
    assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
    assert np.array_equal(columns, np.arange(columns[0], columns[-1] + 1))
    squares.append(((rows[0], rows[-1] + 1), (columns[0], columns[-1] + 1)))
  return squares


def test_cutout_zeroes_one_size_square_per_image_clipped_at_the_borders():
  images = jnp.ones((256, 32, 32, 3), jnp.float32)
  squares = _cutout_squares(images, jax.random.key(0), 16)
  # DeVries' bounds: centre c uniform in [0, 32), zeroed [c - 8, c + 8) clipped to [0, 32).
  possible = {(max(0, c - 8), min(32, c + 8)) for c in range(32)}
  for rows, columns in squares:
    assert rows in possible and columns in possible
  starts = {rows[0] for rows, _ in squares} | {columns[0] for _, columns in squares}
  ends = {rows[1] for rows, _ in squares} | {columns[1] for _, columns in squares}
  assert 0 in starts and 32 in ends  # some squares are clipped at the borders
  assert sum(r == (8, 24) for r, _ in squares) < 30  # centres spread, not all in the middle
  assert len({(r[0], c[0]) for r, c in squares}) > 150


def test_cutout_keeps_dtype_and_every_pixel_outside_its_square():
  images = _distinct_images(16).astype(jnp.uint8) + 1  # no zero of its own
  out = augment.cutout(images, jax.random.key(5), 7)  # odd: DeVries' bounds zero 6 x 6
  assert out.dtype == jnp.uint8 and out.shape == images.shape
  kept = np.asarray(out) != 0
  np.testing.assert_array_equal(np.asarray(out)[kept], np.asarray(images)[kept])
  assert all(
    (r[1] - r[0], c[1] - c[0]) == (6, 6) or 0 in (r[0], c[0]) or 32 in (r[1], c[1])
    for r, c in _cutout_squares(jnp.ones((16, 32, 32, 3)), jax.random.key(5), 7)
  )


def test_cutout_same_key_same_squares_other_key_other():
  images = jnp.ones((8, 32, 32, 3))
  a, b, c = (augment.cutout(images, jax.random.key(k), 16) for k in (3, 3, 4))
  assert jnp.array_equal(a, b) and not jnp.array_equal(a, c)
