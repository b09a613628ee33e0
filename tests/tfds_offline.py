"""Prepares a tfds CIFAR dataset from a local extracted archive, as tfds_source's child would.

    python -m tests.tfds_offline NAME DATA_DIR EXTRACTED_ARCHIVE

tfds's real builder runs (with TensorFlow, in this child process only); only its download is
replaced by the folder given, so tests exercise the real preparation offline.
"""

import sys
from unittest import mock

import tensorflow_datasets as tfds

from resnet_jax import tfds_source

if __name__ == '__main__':
  name, data_dir, archive = sys.argv[1:]
  with mock.patch.object(
    tfds.download.DownloadManager, 'download_and_extract', lambda self, url: archive
  ):
    tfds_source.download_and_prepare(name, data_dir)
