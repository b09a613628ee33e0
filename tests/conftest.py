"""Shared test set-up: four CPU devices, and one compilation cache for the whole session."""
import tempfile

import jax

# Must run before anything touches the backend; every test module sees 4 devices.
jax.config.update('jax_num_cpu_devices', 4)
# Many tests train the same tiny programs; a persistent cache compiles each once per session.
jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='resnet_jax_test_cache_'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
