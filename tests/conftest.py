"""Shared test set-up: four CPU devices, one compilation cache, and the fake CIFAR-10 archive."""

import os
import pathlib
import tempfile

import jax
import pytest

from tests import fake_cifar

# Tests run tiny programs once each, so compiling dominates: without LLVM's optimisations the suite
# compiles about 30% faster. Child processes (launch.py runs) inherit the setting through the
# environment. Before anything touches the backend, which reads XLA_FLAGS once.
os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} --xla_backend_optimization_level=0'
# Must run before anything touches the backend; every test module sees 4 devices.
jax.config.update('jax_num_cpu_devices', 4)
# Many tests train the same tiny programs; a persistent cache compiles each once per session.
jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='resnet_jax_test_cache_'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


@pytest.fixture(scope='session')
def cifar_examples(tmp_path_factory) -> fake_cifar.FakeCifar:
  """The examples of cifar_dir's archive, in the official order."""
  return fake_cifar.write_cifar10(
    tmp_path_factory.getbasetemp() / 'cifar10',
    records_per_batch=16,
    test_records=20,
    learnable=True,
    form='tarball',
  )


@pytest.fixture(scope='session')
def cifar_dir(cifar_examples, tmp_path_factory) -> pathlib.Path:
  """A fake CIFAR-10 tarball: 80 train images coloured by class (a tiny net learns them), 20 test.

  At resnet_test's batch of 8 an epoch is 10 steps: a multiple of its steps_per_call=2, so its
  calls need no extra compiled lengths.
  """
  return tmp_path_factory.getbasetemp() / 'cifar10'
