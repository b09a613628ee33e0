#!/usr/bin/env bash
# Fills .gpu/ (git-ignored) with what the device machine lacks, for tools/gpu_window.sh:
# the wheels of ml_collections (the one package of requirements.txt missing there) and the JPEG
# copy of CIFAR-10 with its decoder, about 54 MiB together. Run once, here, from anywhere:
#   bash tools/prepare_gpu_window.sh [SHARED_DIR]      # default: the checkout's ../shared
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
shared="${1:-../shared}"
# Again from scratch; the shared copies are read-only, these need not be.
chmod -R u+w .gpu 2> /dev/null || true
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/data .gpu/tools
cp -r --no-preserve=mode "$shared/data/cifar10-jpeg" .gpu/data/
cp --no-preserve=mode "$shared/tools/cifar10_jpeg.py" .gpu/tools/
# The device machine runs Python 3.12; ml_collections is pure Python.
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  -d .gpu/wheels ml_collections==1.1.0
du -sh .gpu
