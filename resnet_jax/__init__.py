"""resnet_jax: residual networks on CIFAR in JAX/Flax."""
