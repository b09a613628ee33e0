"""resnet20 and resnet18 against the PyTorch code they port, same weights."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from resnet_jax import models

torch = pytest.importorskip('torch')
torch_models = pytest.importorskip('reference.torch_models')

_REFERENCES = {
  'resnet20': torch_models.resnet20,
  'resnet18': torch_models.resnet18,
}
_BATCH = 8


@pytest.fixture(scope='module', autouse=True)
def _one_torch_thread():
  # The CPU is shared; one thread is plenty for batch 8.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _realistic_batchnorm(variables, rng):
  """Replaces BatchNorm's fresh 1/0 params and stats with varied ones.

  Identity BatchNorms would hide a scale/bias or mean/var mix-up.
  """
  draw = {
    ('params', 'scale'): lambda s: rng.uniform(0.5, 1.5, s),
    ('params', 'bias'): lambda s: rng.normal(0, 0.1, s),
    ('batch_stats', 'mean'): lambda s: rng.normal(0, 0.1, s),
    ('batch_stats', 'var'): lambda s: rng.uniform(0.5, 1.5, s),
  }
  out = {}
  for collection in ('params', 'batch_stats'):
    flat = traverse_util.flatten_dict(dict(variables[collection]))
    for path, value in flat.items():
      # Dense biases are also named 'bias'; only BatchNorm modules have 'bn'.
      if 'bn' in path[-2] and (collection, path[-1]) in draw:
        value = draw[collection, path[-1]](value.shape).astype(np.float32)
      flat[path] = jnp.asarray(value)
    out[collection] = traverse_util.unflatten_dict(flat)
  return out


@pytest.fixture(scope='module', params=sorted(_REFERENCES))
def pair(request):
  """(name, our model, our variables, the PyTorch model, images NHWC)."""
  name = request.param
  rng = np.random.default_rng(0)
  images = rng.normal(size=(_BATCH, 32, 32, 3)).astype(np.float32)
  model = models.get_model(name, 10)
  # rbg keys compile much faster than threefry on CPU; the draws are unused.
  variables = model.init(jax.random.key(0, impl='rbg'), jnp.asarray(images), train=False)
  variables = _realistic_batchnorm(variables, rng)
  torch_model = _REFERENCES[name]()
  torch_models.load_flax_variables(torch_model, variables)
  return name, model, variables, torch_model, images


def _torch_logits(torch_model, images):
  with torch.no_grad():
    return torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()


def _rel_err(ours, ref):
  return np.linalg.norm(np.asarray(ours) - ref) / np.linalg.norm(ref)


def test_eval_logits_match(pair):
  _, model, variables, torch_model, images = pair
  torch_model.eval()
  ref = _torch_logits(torch_model, images)
  ours = model.apply(variables, jnp.asarray(images), train=False)
  assert _rel_err(ours, ref) < 1e-4


def test_train_logits_and_running_mean_match(pair):
  _, model, variables, torch_model, images = pair
  torch_model = copy.deepcopy(torch_model).train()
  ref = _torch_logits(torch_model, images)
  ours, state = model.apply(variables, jnp.asarray(images), train=True, mutable=['batch_stats'])
  assert _rel_err(ours, ref) < 1e-4

  # Our updated stats, loaded into a copy, must equal torch's own update.
  ours_in_torch = copy.deepcopy(torch_model)
  torch_models.load_flax_variables(ours_in_torch, {'params': variables['params'], **state})
  ref_state = torch_model.state_dict()
  keys = [k for k in ref_state if k.endswith('running_mean')]
  ours_means = np.concatenate([ours_in_torch.state_dict()[k].numpy() for k in keys])
  ref_means = np.concatenate([ref_state[k].numpy() for k in keys])
  assert _rel_err(ours_means, ref_means) < 1e-5


def test_init_matches_torch(pair):
  # Our init (now inside torch_model) against a fresh PyTorch init.
  name, _, _, torch_model, _ = pair
  ours = torch_model.state_dict()
  fresh = _REFERENCES[name]().state_dict()
  # Small kernels give too noisy a std to compare.
  keys = [k for k, w in fresh.items() if w.dim() > 1 and w.numel() >= 2000]
  assert len(keys) > 5
  for key in keys:
    assert abs(ours[key].std() / fresh[key].std() - 1) < 0.1, key
  bound = 1 / np.sqrt(ours['linear.weight'].shape[1])
  assert 0 < ours['linear.bias'].abs().max() <= bound
