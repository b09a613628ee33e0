"""--mode=export: a checkpoint as a PyTorch state dict that loads strictly into the reference model
and predicts what load_run predicts; refusals."""

import json
import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import paper_cifar, resnet20
from resnet_jax import augment, cifar, export, load_run, models, records
from resnet_jax.errors import UserError
from tests.launching import launch, read_only

torch = pytest.importorskip('torch')
torch_models = pytest.importorskip('reference.torch_models')

# resnet20 on the fake archive, 2 steps of 2 replicas (seeds 0 and 1), on 1 device.
_OVERRIDES = {
  'dataset.source': 'archive',
  'num_replicas': 2,
  'batch_size': 8,
  'num_train_steps': 2,
  'steps_per_call': 2,
  'eval.batch_size': 8,
  'compilation_cache_dir': '',
}


def _config(cifar_dir, **more):
  config = resnet20.get_config()
  for field, value in {**_OVERRIDES, 'dataset.data_dir': str(cifar_dir), **more}.items():
    section, _, name = field.rpartition('.')
    (config[section] if section else config)[name] = value
  return config


@pytest.fixture(scope='module')
def exported(cifar_dir, tmp_path_factory):
  """The workdir, with replica 1 of its checkpoint of step 2 exported by launch.py."""
  workdir = tmp_path_factory.mktemp('resnet20')
  args = [
    '--config=configs/resnet20.py',
    *(f'--config.{field}={value}' for field, value in _OVERRIDES.items()),
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
  ]
  for extra in ([], ['--mode=export', '--config.export.replica=1']):
    result = launch(*args, *extra, devices=1)
    assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _rel_err(ours, ref):
  return np.linalg.norm(ours - ref) / np.linalg.norm(ref)


def test_the_export_loads_strictly_into_pytorch_and_predicts_as_load_run(exported, cifar_examples):
  folder = exported / 'export' / '2'
  assert sorted(p.name for p in folder.iterdir()) == [
    'config.json',
    'model.safetensors',
    'variables.msgpack',
  ]
  tensors = export.read_safetensors(str(folder / 'model.safetensors'))
  torch_model = torch_models.resnet20()
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
  assert {int(v) for k, v in tensors.items() if k.endswith('num_batches_tracked')} == {2}

  images = cifar_examples.test_images[:8]
  normalised = augment.normalize(
    images, cifar.CHANNEL_MEAN['cifar10'], cifar.CHANNEL_STD['cifar10']
  )
  with torch.no_grad():
    theirs = torch_model.eval()(torch.from_numpy(np.array(normalised).transpose(0, 3, 1, 2)))
  run = load_run(str(exported))
  ours = run.predict(images)
  assert _rel_err(ours[1], theirs.numpy()) < 1e-4
  assert _rel_err(ours[0], theirs.numpy()) > 0.1  # replica 1 was exported, not replica 0

  saved = flax.serialization.msgpack_restore((folder / 'variables.msgpack').read_bytes())
  second = jax.device_get(load_run(str(exported), replica=1).variables)
  jax.tree.map(np.testing.assert_array_equal, saved, second)
  config = json.loads((folder / 'config.json').read_text())
  assert (config['seed'], config['num_replicas'], config['model']['name']) == (1, 1, 'resnet20')


def test_every_reference_model_takes_its_export_strictly():
  assert sorted(export.TORCH_REFERENCES) == sorted(torch_models.MODELS)
  # Each net, scanned forms too (their stacks become per-block names); preact_resnet1001 only
  # scanned, as its config trains it (unrolled, tracing its 333 blocks takes a minute here).
  cases = [(name, {'scan_blocks': name == 'preact_resnet1001'}) for name in export.TORCH_REFERENCES]
  cases.append(('wrn16_8', {'scan_blocks': True}))
  for name, options in cases:
    model = models.get_model(name, 10, **options)
    shapes = jax.eval_shape(
      lambda model=model: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    tensors = export.torch_state_dict(variables, num_batches_tracked=0)
    torch_models.MODELS[name]().load_state_dict(
      {k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True
    )


def test_safetensors_round_trip(tmp_path):
  tensors = {
    'a.weight': np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    'a.num_batches_tracked': np.array(7, np.int64),
  }
  export.write_safetensors(str(tmp_path / 'x.safetensors'), tensors)
  back = export.read_safetensors(str(tmp_path / 'x.safetensors'))
  jax.tree.map(np.testing.assert_array_equal, back, tensors)
  raw = (tmp_path / 'x.safetensors').read_bytes()
  length = int.from_bytes(raw[:8], 'little')
  assert length % 8 == 0 and len(raw) == 8 + length + 24 * 4 + 8


@pytest.mark.parametrize(
  'name, shortcut', [('plain20', ''), ('resnet_test', ''), ('resnet20', 'B'), ('plain110', '')]
)
def test_a_model_without_a_pytorch_reference_is_refused(tmp_path, name, shortcut):
  config = paper_cifar.get_config(name)
  config.model.shortcut = shortcut
  records.write_config(str(tmp_path), config)
  with pytest.raises(UserError, match=rf'none for {name}.* resnet20 \(shortcut A\)'):
    export.export_checkpoint(config, str(tmp_path))


def test_an_existing_export_is_replaced_only_when_asked(exported, cifar_dir, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(exported, workdir)
  config = _config(cifar_dir, **{'export.replica': 1})
  with pytest.raises(UserError, match='export.overwrite=True'):
    export.export_checkpoint(config, str(workdir))
  (workdir / 'export' / '2' / 'model.safetensors').unlink()
  config.export.overwrite = True
  assert export.export_checkpoint(config, str(workdir)) == str(workdir / 'export' / '2')
  assert (workdir / 'export' / '2' / 'model.safetensors').read_bytes() == (
    exported / 'export' / '2' / 'model.safetensors'
  ).read_bytes()


def test_an_export_that_cannot_be_written_is_refused(exported, tmp_path):
  folder = tmp_path / 'read_only'
  shutil.copytree(exported, folder / 'run', ignore=shutil.ignore_patterns('export'))
  with read_only(folder) as prefix:
    result = launch(f'--workdir={folder / "run"}', '--mode=export', devices=1, prefix=prefix)
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
  run = folder / 'run'
  assert f'Cannot write the export to {run / "export" / "2"}: {run} is ' in result.stderr
