#!/usr/bin/env bash
# JAX against PyTorch on one GPU, in under 5 minutes: bash benchmarks/gpu_check.sh OUT_FILE
#
# ResNet-18 and ResNet-56 at batch 512, bfloat16 (JAX: compute dtype, parameters float32;
# PyTorch: autocast) and float32: the JAX data path and pure step, PyTorch eager and
# torch.compile, both channels_last. Needs only jax[cuda], flax, optax, numpy and torch (tested:
# tests/test_benchmarks.py blocks ml_collections, orbax and TensorFlow). OUT_FILE gets the header
# and the table, rewritten after every row, so a run stopped at the time limit still leaves the
# rows it finished.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash benchmarks/gpu_check.sh OUT_FILE" >&2
  exit 2
fi
out="$(realpath -m -- "$1")"  # before the cd, so a relative OUT_FILE is the caller's
# The repository root, where python -m benchmarks.throughput finds its packages.
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1

nvidia-smi -L

# Compilation (XLA's and torch.compile's) takes most of the time; the limit keeps the whole
# script inside 5 minutes whatever it costs on this machine.
status=0
timeout --kill-after=10 280 "${PYTHON:-python3}" -m benchmarks.throughput \
  --models resnet18,resnet56 --batch_size 512 --dtypes bfloat16,float32 \
  --steps_per_call 1 --steps 20 --warmup 5 --rounds 1 --torch_compile --out "$out" \
  || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "gpu_check: stopped at the time limit; $out holds the rows finished by then." >&2
fi
exit "$status"
