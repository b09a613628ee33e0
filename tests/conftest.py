"""Shared test set-up: four CPU devices, so mesh code is exercised as on a multi-GPU host."""
import jax

# Must run before anything touches the backend; every test module sees 4 devices.
jax.config.update('jax_num_cpu_devices', 4)
