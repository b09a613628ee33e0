"""Each family's nets against the PyTorch code they port, same weights: logits in eval and train
mode, BatchNorm's updated running statistics, the init's distributions, the parameter counts."""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from resnet_jax import models, preact

torch = pytest.importorskip('torch')
torch_models = pytest.importorskip('reference.torch_models')
torch_preact = pytest.importorskip('reference.torch_preact')

# case -> (registered model or a module class, its options, its PyTorch reference): every block
# and shortcut kind, a scanned form; the deep nets by a shallower sibling of the same code
# (compiling their init alone takes minutes here). Their parameter counts below are exact.
_REFERENCES = {
  'resnet20': ('resnet20', {}, torch_models.resnet20),
  'resnet20_option_b': (
    'resnet20',
    {'shortcut': 'B'},
    functools.partial(torch_models.resnet20, option='B'),
  ),
  'resnet18': ('resnet18', {}, torch_models.resnet18),
  'resnet34': ('resnet34', {}, torch_models.resnet34),
  'resnet50': ('resnet50', {}, torch_models.resnet50),
  'preact_resnet18': ('preact_resnet18', {}, torch_models.MODELS['preact_resnet18']),
  # preact_resnet164's code at depth 29 (3 units a stage), scanned.
  'preact_resnet29_scanned': (
    functools.partial(preact.REGISTRY['preact_resnet164'], stage_sizes=(3,) * 3),
    {'scan_blocks': True},
    functools.partial(torch_preact.HePreActResNet, 29),
  ),
  # wrn16_8's code at width 2.
  'wrn16_2': (preact.wide(16, 2), {}, functools.partial(torch_preact.WideResNet, 16, 10, 2)),
}
_BATCH = 8

# Trainable parameters of every reference with 10 classes (tests/test_models.py counts ours).
_REFERENCE_PARAM_COUNTS = {
  'preact_resnet18': 11_171_146,
  'preact_resnet164': 1_703_258,
  'preact_resnet1001': 10_327_706,
  'resnet18': 11_173_962,
  'resnet20': 269_722,
  'resnet32': 464_154,
  'resnet34': 21_282_122,
  'resnet44': 658_586,
  'resnet50': 23_520_842,
  'resnet56': 853_018,
  'resnet110': 1_727_962,
  'wrn16_8': 10_961_370,
  'wrn28_10': 36_479_194,
}


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
  """(case, our model, our variables, the PyTorch model, images NHWC)."""
  case = request.param
  name, options, reference = _REFERENCES[case]
  rng = np.random.default_rng(0)
  images = rng.normal(size=(_BATCH, 32, 32, 3)).astype(np.float32)
  if isinstance(name, str):
    model = models.get_model(name, 10, **options)
  else:
    model = name(num_classes=10, **options)
  # rbg keys compile much faster than threefry on CPU; the draws are unused.
  variables = model.init(jax.random.key(0, impl='rbg'), jnp.asarray(images), train=False)
  variables = _realistic_batchnorm(variables, rng)
  torch_model = reference()
  torch_models.load_flax_variables(torch_model, variables)
  return case, model, variables, torch_model, images


def _torch_logits(torch_model, images):
  with torch.no_grad():
    return torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2)).double()).numpy()


def _in_float64(torch_model):
  # The reference's own float32 rounding, through 30 blocks in train mode, nears the 1e-4 bound;
  # against float64 the error measured is ours alone.
  return copy.deepcopy(torch_model).double()


def _rel_err(ours, ref):
  return np.linalg.norm(np.asarray(ours) - ref) / np.linalg.norm(ref)


def test_eval_logits_match(pair):
  _, model, variables, torch_model, images = pair
  ref = _torch_logits(_in_float64(torch_model).eval(), images)
  ours = model.apply(variables, jnp.asarray(images), train=False)
  assert _rel_err(ours, ref) < 1e-4


def _normalised_counts(torch_model, images):
  """Each BatchNorm's name -> the values per channel it normalised in a train-mode forward."""
  counts, hooks = {}, []
  for name, module in torch_model.named_modules():
    if isinstance(module, torch.nn.BatchNorm2d):

      def record(_, inputs, __, name=name):
        counts[name] = inputs[0].numel() // inputs[0].shape[1]

      hooks.append(module.register_forward_hook(record))
  _torch_logits(torch_model, images)
  for hook in hooks:
    hook.remove()
  return counts


def test_train_logits_and_running_statistics_match(pair):
  _, model, variables, torch_model, images = pair
  torch_model = _in_float64(torch_model).train()
  before = copy.deepcopy(torch_model.state_dict())
  ref = _torch_logits(torch_model, images)
  ours, state = model.apply(variables, jnp.asarray(images), train=True, mutable=['batch_stats'])
  assert _rel_err(ours, ref) < 1e-4

  # Our updated stats, loaded into a copy, must equal torch's own update.
  ours_in_torch = copy.deepcopy(torch_model)
  torch_models.load_flax_variables(ours_in_torch, {'params': variables['params'], **state})
  mine, theirs = ours_in_torch.state_dict(), torch_model.state_dict()
  counts = _normalised_counts(copy.deepcopy(torch_model), images)
  means = [k for k in theirs if k.endswith('running_mean')]
  assert _rel_err(*(np.concatenate([s[k].numpy() for k in means]) for s in (mine, theirs))) < 1e-5
  # flax averages the biased batch variance in, PyTorch the unbiased one (n / (n - 1) of it,
  # n the values per channel): undo the difference, then they must agree.
  corrected, reference = [], []
  for key in [k for k in theirs if k.endswith('running_var')]:
    n = counts[key.removesuffix('.running_var')]
    old = before[key].numpy()
    batch_var = (mine[key].numpy() - 0.9 * old) / 0.1
    corrected.append(0.9 * old + 0.1 * batch_var * n / (n - 1))
    reference.append(theirs[key].numpy())
  assert _rel_err(np.concatenate(corrected), np.concatenate(reference)) < 1e-5


def test_init_matches_torch(pair):
  # Our init (now inside torch_model) against a fresh PyTorch init: the same spread for every
  # kernel, and the same Dense bias (PyTorch's default, or zero).
  case, _, _, torch_model, _ = pair
  ours = torch_model.state_dict()
  fresh = _REFERENCES[case][2]().state_dict()
  keys = [k for k, w in fresh.items() if w.dim() > 1]
  assert len(keys) > 5
  for key in keys:
    # The ratio of two sample deviations of n normal draws varies by about 1 / sqrt(n).
    tolerance = 5 / np.sqrt(ours[key].numel())
    assert abs(ours[key].std() / fresh[key].std() - 1) < tolerance, key
  bias = 'fc.bias' if 'fc.bias' in fresh else 'linear.bias'
  if fresh[bias].abs().max() == 0:
    assert ours[bias].abs().max() == 0
  else:
    bound = 1 / np.sqrt(fresh[bias.replace('bias', 'weight')].shape[1])
    assert 0 < ours[bias].abs().max() <= bound


@pytest.mark.parametrize('name', sorted(_REFERENCE_PARAM_COUNTS))
def test_reference_param_counts(name):
  assert sorted(torch_models.MODELS) == sorted(_REFERENCE_PARAM_COUNTS)
  with torch.device('meta'):  # shapes only: wrn28_10 and preact_resnet1001 cost nothing
    model = torch_models.MODELS[name]()
  assert sum(p.numel() for p in model.parameters()) == _REFERENCE_PARAM_COUNTS[name]
