"""resnet_jax: residual networks on CIFAR in JAX/Flax.

resnet_jax.load_run(workdir) restores a trained run to predict and evaluate with
(resnet_jax/loading.py, docs/using-a-run.md).
"""


def __getattr__(name: str):
  # Imported on first use: `from resnet_jax import records` must work where JAX is not installed,
  # and the benchmarks import the models where ml_collections is not.
  if name in ('load_run', 'Run'):
    from resnet_jax import loading

    return getattr(loading, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
