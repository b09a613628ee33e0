"""Decoded arrays kept on disk beside what they were decoded from, with a key that says from what.

A cache file is one uncompressed .npz: the arrays and `key`, a string naming the source exactly
(tfds_source's: the dataset's version and its record files' names, sizes and modification
times). load() gives the arrays only when the key is the source's now and the file reads back
whole (zip checks each array's CRC-32); anything else is a miss, and the caller decodes again
and saves. save() goes through records.write_bytes: a reader never sees half a file, and a
cache that cannot be written (a full disk, a read-only folder) costs a warning, never the run.
"""

import io
import os
import zipfile

import numpy as np
from absl import logging

from resnet_jax import records
from resnet_jax.errors import UserError

_KEY = 'key'


def load(path: str, key: str) -> dict[str, np.ndarray] | None:
  """The arrays saved at path under `key`; None (with the reason logged) when there are none."""
  try:
    with np.load(path) as saved:
      if str(saved[_KEY]) != key:
        logging.info('The cache %s is of other files than these; decoding them again.', path)
        return None
      return {name: saved[name] for name in saved.files if name != _KEY}
  except FileNotFoundError:
    return None
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    logging.warning('The cache %s is damaged (%s); decoding the data again.', path, e)
    return None


def save(path: str, key: str, arrays: dict[str, np.ndarray]) -> None:
  """Saves arrays under key, replacing what path held; a failure is a warning."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays, **{_KEY: np.asarray(key)})
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records.write_bytes(path, buffer.getbuffer())
  except (OSError, UserError) as e:
    logging.warning(
      'Could not cache the decoded arrays in %s (%s); the next start decodes them again.', path, e
    )
