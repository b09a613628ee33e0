"""--mode=export: one replica of a checkpoint, for PyTorch and for flax, in workdir/export/<step>/
(its EMA of the weights, with export.ema, in workdir/export/<step>_ema/).

  model.safetensors   the PyTorch state dict of the model's reference in reference/torch_models.py
                      (load_state_dict(strict=True) takes it): akamaster's names for the paper's
                      nets, kuangliu's for ResNet-18/34/50 and PreAct ResNet-18, xternalz's for
                      the wide nets; a scanned stack of blocks as its blocks; OIHW conv and (out, in) linear weights; each
                      BatchNorm's running_mean, running_var and num_batches_tracked
  variables.msgpack   flax.serialization.to_bytes({'params': ..., 'batch_stats': ...})
  config.json         the run's config as that of the exported replica alone (its seed, 1 replica)

numpy only, no torch: the safetensors format is written by hand (an 8-byte little-endian header
length, a JSON header of each tensor's dtype, shape and byte range, then the little-endian bytes).
reference/torch_models.load_flax_variables maps flax names to PyTorch's with this module's
functions. docs/using-a-run.md says what num_batches_tracked holds and why running_var is kept.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from absl import logging
from flax import serialization, traverse_util

from resnet_jax import distributed, layers, records, validation
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  import ml_collections

# The nets that reference/torch_models.MODELS ports, each with its reference's shortcut (a test
# checks that the two agree; this module must not import torch).
TORCH_REFERENCES = {
  **{name: 'A' for name in ('resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110')},
  **{name: 'B' for name in ('resnet18', 'resnet34', 'resnet50')},
  **{
    name: 'B'
    for name in ('preact_resnet18', 'preact_resnet164', 'preact_resnet1001', 'wrn16_8', 'wrn28_10')
  },
}
MODEL_FILE = 'model.safetensors'
VARIABLES_FILE = 'variables.msgpack'

# flax leaf name -> PyTorch state_dict suffix, per variable collection.
_LEAF_NAMES = {
  'params': {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'},
  'batch_stats': {'mean': 'running_mean', 'var': 'running_var'},
}
_MODULE_NAMES = {'shortcut_conv': 'shortcut.0', 'shortcut_bn': 'shortcut.1'}
_SAFETENSORS_DTYPES = {'float32': 'F32', 'int64': 'I64'}


def torch_key(collection: str, path: tuple[str, ...]) -> str:
  """The PyTorch state_dict key of the flax variable collection/path."""
  # layer2_0 -> layer2.0 (an index into nn.Sequential).
  modules = [_MODULE_NAMES.get(m, m.replace('_', '.')) for m in path[:-1]]
  return '.'.join(modules + [_LEAF_NAMES[collection][path[-1]]])


def to_torch_layout(value: np.ndarray) -> np.ndarray:
  """A flax kernel in PyTorch's layout; other values as they are."""
  if value.ndim == 4:  # conv kernel: HWIO -> OIHW.
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:  # dense kernel: (in, out) -> (out, in).
    return value.T
  return value


def torch_state_dict(
  variables: Mapping[str, Any], num_batches_tracked: int | None = None
) -> dict[str, np.ndarray]:
  """flax {'params', 'batch_stats'} as a PyTorch state dict of float32 numpy arrays.

  num_batches_tracked: also each BatchNorm's counter (an int64 scalar) with this value; None
  leaves the counters out. A scanned stack of blocks (model.scan_blocks) becomes its blocks.
  """
  state = {}
  for collection in ('params', 'batch_stats'):
    unrolled = layers.unscanned(variables[collection])
    for path, value in traverse_util.flatten_dict(unrolled).items():
      # A copy: jax arrays read as read-only numpy arrays, which torch.from_numpy warns about.
      state[torch_key(collection, path)] = np.array(to_torch_layout(np.asarray(value, np.float32)))
  if num_batches_tracked is not None:
    for key in [k for k in state if k.endswith('.running_mean')]:
      counter = key.removesuffix('running_mean') + 'num_batches_tracked'
      state[counter] = np.array(num_batches_tracked, np.int64)
  return state


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes float32 and int64 arrays as a safetensors file (what safetensors.torch.load_file
  and transformers read)."""
  header: dict[str, Any] = {'__metadata__': {'format': 'pt'}}
  blobs, offset = [], 0
  for name in sorted(tensors):
    array = np.asarray(tensors[name])
    blob = np.ascontiguousarray(array, array.dtype.newbyteorder('<')).tobytes()
    header[name] = {
      'dtype': _SAFETENSORS_DTYPES[array.dtype.name],
      'shape': list(array.shape),
      'data_offsets': [offset, offset + len(blob)],
    }
    blobs.append(blob)
    offset += len(blob)
  text = json.dumps(header, separators=(',', ':')).encode()
  text += b' ' * (-len(text) % 8)  # the format pads the header with spaces to 8 bytes
  records.write_bytes(path, struct.pack('<Q', len(text)) + text + b''.join(blobs))


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """The arrays of a safetensors file of float32 and int64 tensors, by name."""
  with open(path, 'rb') as f:
    data = f.read()
  (length,) = struct.unpack('<Q', data[:8])
  header = json.loads(data[8 : 8 + length])
  header.pop('__metadata__', None)
  dtypes = {code: np.dtype(name).newbyteorder('<') for name, code in _SAFETENSORS_DTYPES.items()}
  tensors = {}
  for name, info in header.items():
    start, _ = info['data_offsets']
    dtype, shape = dtypes[info['dtype']], info['shape']
    flat = np.frombuffer(data, dtype, math.prod(shape), offset=8 + length + start)
    tensors[name] = flat.reshape(shape).astype(dtype.newbyteorder('='))
  return tensors


def check_exportable(model: ml_collections.ConfigDict) -> None:
  """Refuses a model (the config's model section) that has no PyTorch reference to load into."""
  reference_shortcut = TORCH_REFERENCES.get(model.name)
  if reference_shortcut is None or model.shortcut not in ('', reference_shortcut):
    names = ', '.join(f'{name} (shortcut {s})' for name, s in sorted(TORCH_REFERENCES.items()))
    shortcut = f' with shortcut {model.shortcut}' if model.shortcut else ''
    raise UserError(
      f'--mode=export writes the state dict of a PyTorch reference model '
      f'(reference/torch_models.py); there is none for {model.name}{shortcut}. Those that '
      f'export: {names}. In Python, resnet_jax.load_run(workdir).variables holds the flax '
      'weights of any run (docs/using-a-run.md).'
    )


def export_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes replica config.export.replica of checkpoint config.eval.step (-1: the latest) to
  workdir/export/<step>/ (its EMA, with config.export.ema, to workdir/export/<step>_ema/);
  returns that folder.

  `config` is validated as the run's (as --mode=eval's) and chooses the step and replica; the
  model comes from the workdir's config.json, as load_run reads it. An existing export of that
  step is refused unless config.export.overwrite, and so is a folder that cannot be written.
  """
  # Imported here: reference/torch_models imports this module for its names where neither orbax
  # nor ml_collections is installed (the benchmark machines).
  from resnet_jax import checkpoint, loading

  validation.validate_config(config, jax.device_count())
  check_exportable(loading.read_config(workdir).model)
  manager, step = checkpoint.open_step(workdir, config.eval.step)
  manager.close()
  name = f'{step}_ema' if config.export.ema else str(step)
  folder = os.path.join(os.path.abspath(workdir), 'export', name)
  if os.path.exists(folder) and not config.export.overwrite:
    raise UserError(
      f'{folder} exists: step {step} was exported before. Pass '
      '--config.export.overwrite=True to replace it.'
    )
  reason = records.unwritable(folder) if distributed.is_writer() else None
  if not distributed.process_zero_value(reason is None):  # process 0 alone writes it
    raise UserError(
      f'Cannot write the export to {folder}: {reason or "not by process 0"}. Copy the '
      'workdir (its config.json and checkpoints/) where you can write, and export the copy; or '
      'take the flax weights from resnet_jax.load_run(workdir).variables in Python.'
    )
  run = loading.load_run(workdir, step, config.export.replica, ema=config.export.ema)
  variables = jax.device_get(run.variables)
  diverged = run.diverged_at[0]
  if diverged:
    logging.warning(
      'Replica %d diverged at step %d: exporting its last finite weights, of step %d.',
      run.replicas[0],
      diverged,
      diverged - 1,
    )
  alone = run.config.copy_and_resolve_references()
  alone.seed, alone.num_replicas, alone.replica_groups = run.seeds[0], 1, 0
  if distributed.is_writer():
    os.makedirs(folder, exist_ok=True)
    # num_batches_tracked: the train steps the BatchNorm statistics saw, as PyTorch counts them.
    tensors = torch_state_dict(variables, diverged - 1 if diverged else step)
    write_safetensors(os.path.join(folder, MODEL_FILE), tensors)
    records.write_bytes(os.path.join(folder, VARIABLES_FILE), serialization.to_bytes(variables))
    records.write_config(folder, alone)
    logging.info(
      'Wrote %s: replica %d (seed %d) of step %d%s.',
      folder,
      run.replicas[0],
      run.seeds[0],
      step,
      ', the EMA of its weights' if run.ema else '',
    )
  return folder
