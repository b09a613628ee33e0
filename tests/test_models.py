"""Tests for resnet_jax.models: sizes, dtypes, BatchNorm modes, init, scanned stages, dropout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import resnet_test
from resnet_jax import layers, loading, models, parallel, preact, records, setup, train_step

_IMAGES = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)

# Trainable parameters of the PyTorch references with 10 classes.
_PARAM_COUNTS = {
  'resnet20': 269_722,
  'resnet32': 464_154,
  'resnet44': 658_586,
  'resnet56': 853_018,
  'resnet110': 1_727_962,
  'resnet18': 11_173_962,
  'resnet34': 21_282_122,
  'resnet50': 23_520_842,
  'preact_resnet18': 11_171_146,
  'preact_resnet164': 1_703_258,
  'preact_resnet1001': 10_327_706,
  'wrn16_8': 10_961_370,
  'wrn28_10': 36_479_194,
}
_PAPER_NETS = ('resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110')
# Option B's projections: 1x1 conv + BN at 16->32 and 32->64 channels.
_OPTION_B_EXTRA = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def _param_count(name, **overrides):
  model = models.get_model(name, 10, **overrides)
  # eval_shape: shapes only, so even resnet50 costs a trace, not an init.
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), _IMAGES)
  return sum(leaf.size for leaf in jax.tree.leaves(variables['params']))


def _init_test_net(**overrides):
  model = models.get_model('resnet_test', 10, **overrides)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  # rbg keys compile much faster than threefry on CPU.
  variables = model.init(jax.random.key(0, impl='rbg'), images, train=False)
  return model, variables, images


@pytest.fixture(scope='module')
def tiny_net():
  return _init_test_net()


def test_model_names_sorted_and_complete():
  expected = set(_PARAM_COUNTS) | {f'plain{d}' for d in (20, 32, 44, 56, 110)}
  assert set(models.MODEL_NAMES) == expected | {'resnet_test'}
  assert list(models.MODEL_NAMES) == sorted(models.MODEL_NAMES)


@pytest.mark.parametrize('name', sorted(_PARAM_COUNTS))
def test_param_count(name):
  # preact_resnet1001 unrolled traces 333 blocks (seconds); its scanned form counts the same.
  scanned = {'scan_blocks': True} if name == 'preact_resnet1001' else {}
  assert _param_count(name, **scanned) == _PARAM_COUNTS[name]


@pytest.mark.parametrize('name', ['preact_resnet164', 'wrn16_8'])
def test_scanned_and_unrolled_forms_hold_the_same_variables(name):
  model = models.get_model(name, 10)
  init = functools.partial(model.init, train=False)
  unrolled = jax.eval_shape(init, jax.random.key(0), _IMAGES)
  scanned_model = models.get_model(name, 10, scan_blocks=True)
  scanned = jax.eval_shape(
    functools.partial(scanned_model.init, train=False), jax.random.key(0), _IMAGES
  )
  # unscanned() indexes arrays: zeros of the scanned shapes.
  zeros = functools.partial(jax.tree.map, lambda leaf: np.zeros(leaf.shape, leaf.dtype))
  shapes = functools.partial(jax.tree.map, lambda leaf: leaf.shape)
  for collection in ('params', 'batch_stats'):
    assert shapes(layers.unscanned(zeros(scanned[collection]))) == shapes(unrolled[collection])


@pytest.mark.parametrize('name', _PAPER_NETS)
def test_param_count_option_b(name):
  assert _param_count(name, shortcut='B') == _PARAM_COUNTS[name] + _OPTION_B_EXTRA


@pytest.mark.parametrize('depth', (20, 32, 44, 56, 110))
def test_plain_net_param_count_equals_option_a(depth):
  assert _param_count(f'plain{depth}') == _PARAM_COUNTS[f'resnet{depth}']


def test_plain_net_has_no_shortcut_modules():
  model = models.get_model('plain20', 10)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), _IMAGES)
  assert 'shortcut_conv' not in variables['params']['layer2_0']


def test_float32_logits(tiny_net):
  model, variables, images = tiny_net
  logits = model.apply(variables, images, train=False)
  assert logits.shape == (2, 10)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


def test_bfloat16_computes_in_bf16_keeps_float32_params_and_logits(tiny_net):
  _, variables, images = tiny_net
  model = models.get_model('resnet_test', 10, dtype='bfloat16')
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), images)
  for leaf in jax.tree.leaves(shapes):
    assert leaf.dtype == jnp.float32
  # param_dtype is float32 either way, so the float32 net's variables fit.
  logits, state = model.apply(
    variables, images, train=False, capture_intermediates=True, mutable=['intermediates']
  )
  assert logits.dtype == jnp.float32
  acts = state['intermediates']
  assert acts['conv1']['__call__'][0].dtype == jnp.bfloat16
  assert acts['layer3_0']['__call__'][0].dtype == jnp.bfloat16


def test_batch_stats_update_in_train_mode_only(tiny_net):
  model, variables, images = tiny_net
  _, train_state = model.apply(variables, images, train=True, mutable=['batch_stats'])
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(train_state['batch_stats'])
  assert all(not np.allclose(a, b) for a, b in zip(before, after))

  _, eval_state = model.apply(variables, images, train=False, mutable=['batch_stats'])
  for a, b in zip(before, jax.tree.leaves(eval_state['batch_stats'])):
    np.testing.assert_array_equal(a, b)


def _bn_scales(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {
    '/'.join(k.key for k in path[:-1]): np.asarray(v) for path, v in flat if path[-1].key == 'scale'
  }


def test_bn_scales_start_at_one(tiny_net):
  _, variables, _ = tiny_net
  for name, scale in _bn_scales(variables['params']).items():
    np.testing.assert_array_equal(scale, 1.0, err_msg=name)


def test_zero_init_residual_basic_block():
  _, variables, _ = _init_test_net(shortcut='B', zero_init_residual=True)
  scales = _bn_scales(variables['params'])
  assert 'layer2_0/shortcut_bn' in scales
  for name, scale in scales.items():
    want = 0.0 if name.endswith('/bn2') else 1.0
    np.testing.assert_array_equal(scale, want, err_msg=name)


def test_zero_init_residual_bottleneck():
  # A two-stage Bottleneck net: tiny, but with bn3 and a projection.
  # Zero kernels: the values do not matter here and cost no RNG compiles.
  model = models.ResNet(
    stage_sizes=(1, 1),
    stage_filters=(2, 4),
    block_cls=models.Bottleneck,
    num_classes=3,
    kernel_init=jax.nn.initializers.zeros,
    zero_init_residual=True,
  )
  variables = model.init(jax.random.key(0, impl='rbg'), jnp.zeros((1, 8, 8, 3)), train=False)
  scales = _bn_scales(variables['params'])
  assert {'layer1_0/bn3', 'layer2_0/shortcut_bn'} <= set(scales)
  for name, scale in scales.items():
    want = 0.0 if name.endswith('/bn3') else 1.0
    np.testing.assert_array_equal(scale, want, err_msg=name)


def test_zero_init_residual_starts_blocks_as_their_shortcut():
  # With a zero last scale a block outputs relu(shortcut(x)), here relu(x) = x.
  model, variables, images = _init_test_net(zero_init_residual=True)
  _, state = model.apply(
    variables, images, train=False, capture_intermediates=True, mutable=['intermediates']
  )
  acts = state['intermediates']
  stem = jax.nn.relu(acts['bn1']['__call__'][0])
  np.testing.assert_allclose(acts['layer1_0']['__call__'][0], stem)


def test_shortcut_choices_follow_each_family():
  assert models.shortcut_choices('resnet56') == ('A', 'B')
  assert models.shortcut_choices('resnet50') == ('B',)
  assert models.shortcut_choices('plain110') == ()
  assert models.get_model('resnet20', 10, shortcut='B').shortcut == 'B'
  assert models.get_model('resnet20', 10).shortcut == 'A'


def _train_forward(model, variables, images):
  return model.apply(variables, images, train=True, mutable=['batch_stats'])


def test_bn_group_size_of_the_whole_batch_equals_the_default():
  images = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  default = models.get_model('resnet_test', 10)
  ghost = models.get_model('resnet_test', 10, bn_group_size=8)
  variables = default.init(jax.random.key(0), images[:1], train=False)
  assert jax.tree.structure(
    ghost.init(jax.random.key(0), images[:1], train=False)
  ) == jax.tree.structure(variables)  # checkpoints move between the two
  (logits, stats), (expected, expected_stats) = (
    _train_forward(m, variables, images) for m in (ghost, default)
  )
  np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(expected_stats), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
    ghost.apply(variables, images, train=False),
    default.apply(variables, images, train=False),
    rtol=1e-6,
  )


def test_bn_groups_normalise_each_group_on_its_own():
  images = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  default = models.get_model('resnet_test', 10)
  variables = default.init(jax.random.key(0), images[:1], train=False)
  logits, stats = _train_forward(
    models.get_model('resnet_test', 10, bn_group_size=4), variables, images
  )
  halves = [_train_forward(default, variables, half) for half in (images[:4], images[4:])]
  # Each group of 4 sees exactly what a batch of 4 would; the running stats take their mean.
  np.testing.assert_allclose(logits, jnp.concatenate([h[0] for h in halves]), rtol=1e-5, atol=1e-6)
  expected = jax.tree.map(lambda a, b: (a + b) / 2, halves[0][1], halves[1][1])
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits, _train_forward(default, variables, images)[0], atol=1e-3)


def _small_preact(**options):
  """preact_resnet164's code with stages of 3, 2 and 1 units: scans of 2, 1 and none."""
  model = functools.partial(preact.REGISTRY['preact_resnet164'], stage_sizes=(3, 2, 1))
  return model(num_classes=10, **options)


def test_scanned_blocks_compute_what_unrolled_ones_do():
  images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  scanned = _small_preact(scan_blocks=True)
  variables = jax.jit(functools.partial(scanned.init, train=False))(
    jax.random.key(0, impl='rbg'), images
  )
  assert variables['params']['layer1_1_scan']['conv2']['kernel'].shape == (2, 3, 3, 16, 16)
  unrolled = {collection: layers.unscanned(tree) for collection, tree in variables.items()}
  assert {'layer1_1', 'layer1_2', 'layer2_1'} <= set(unrolled['params'])

  def train_step(params, batch_stats, model):
    def loss(params):
      logits, state = model.apply(
        {'params': params, 'batch_stats': batch_stats}, images, train=True, mutable=['batch_stats']
      )
      return jnp.sum(logits**2), (logits, state['batch_stats'])

    (_, (logits, stats)), grads = jax.value_and_grad(loss, has_aux=True)(params)
    # In the unrolled names, whatever the form.
    return logits, layers.unscanned(stats), layers.unscanned(grads)

  step = jax.jit(train_step, static_argnums=2)
  results = [
    step(*(these['params'], these['batch_stats']), _small_preact(scan_blocks=scan, remat=remat))
    for scan, remat, these in (
      (True, False, variables),
      (True, True, variables),
      (False, False, unrolled),
    )
  ]
  for result in results[1:]:
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), result, results[0]
    )
  eval_logits = [
    _small_preact(scan_blocks=scan).apply(these, images, train=False)
    for scan, these in ((True, variables), (False, unrolled))
  ]
  np.testing.assert_allclose(*eval_logits, rtol=1e-5, atol=1e-6)


def test_dropout_draws_from_its_rng_in_training_only():
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  dropped = preact.wide(10, 1)(num_classes=10, dropout_rate=0.5)
  plain = preact.wide(10, 1)(num_classes=10)
  variables = plain.init(jax.random.key(0, impl='rbg'), images, train=False)

  def train(model, key):
    return model.apply(
      variables, images, train=True, mutable=['batch_stats'], rngs={'dropout': key}
    )[0]

  keys = jax.random.split(jax.random.key(2), 2)
  np.testing.assert_array_equal(train(dropped, keys[0]), train(dropped, keys[0]))
  assert not np.allclose(train(dropped, keys[0]), train(dropped, keys[1]), atol=1e-3)
  assert not np.allclose(train(dropped, keys[0]), train(plain, keys[0]), atol=1e-3)
  np.testing.assert_array_equal(
    dropped.apply(variables, images, train=False), plain.apply(variables, images, train=False)
  )


def test_a_config_saved_before_the_new_fields_existed_builds_its_model(tmp_path):
  # load_run reads a config.json as saved: fields added since read as the values old runs had.
  saved = resnet_test.get_config().to_dict()
  for option in ('dropout_rate', 'scan_blocks', 'remat'):
    del saved['model'][option]
  del saved['ema'], saved['augment']
  records.write_json(str(tmp_path / records.CONFIG), saved)
  config = loading.read_config(str(tmp_path))
  assert (config.model.dropout_rate, config.ema.decay, config.augment.cutout_size) == (0.0, 0.0, 0)
  model = setup.build_model(config)
  assert (model.name, model.stage_filters) == (None, (4, 8, 16))


def test_the_train_step_draws_dropout_from_the_steps_key():
  # A tiny WRN with dropout: the step must hand it a 'dropout' key, the same for the same step.
  mesh = parallel.make_mesh(jax.devices()[:1])
  tx = optax.sgd(0.1)
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
  labels = np.arange(8, dtype=np.int32) % 10

  def step(model, aug_key):
    variables = model.init(jax.random.key(0, impl='rbg'), images[:1] / 255.0, train=False)
    state = train_step.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(variables['params']),
      diverged_at=jnp.zeros((), jnp.int32),
    )
    run = functools.partial(
      train_step.train_step,
      model=model,
      tx=tx,
      schedule=lambda _: 0.1,
      batch_size=8,
      epoch_steps=1,
      mean=(0.5,) * 3,
      std=(0.25,) * 3,
      label_smoothing=0.0,
      mesh=mesh,
    )
    jitted = jax.jit(run)
    # Twice: the same step draws the same mask.
    return [jitted(state, images, labels, jnp.arange(8), aug_key)[1]['loss'] for _ in range(2)]

  dropped, plain = (preact.wide(10, 1)(num_classes=10, dropout_rate=rate) for rate in (0.5, 0))
  key = jax.random.key(3)
  first, again = step(dropped, key)
  assert first == again
  assert first != step(plain, key)[0]
