"""Schedules give the published rates; the optimiser is torch.optim.SGD's update rule."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default, resnet20, resnet110
from resnet_jax import optim, timeline


def _schedule(config, num_train_examples=50_000):
  plan = timeline.resolve(config, num_train_examples)
  return optim.learning_rate_schedule(config.schedule, config.optimizer.learning_rate, plan)


def test_paper_piecewise_schedule():
  schedule = _schedule(resnet20.get_config())
  for step, lr in [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01), (48_000, 0.001)]:
    assert float(schedule(step)) == pytest.approx(lr)


def test_resnet110_constant_warmup_then_paper_boundaries():
  schedule = _schedule(resnet110.get_config())
  for step, lr in [
    (0, 0.01),
    (399, 0.01),
    (400, 0.1),
    (31_999, 0.1),
    (32_000, 0.01),
    (48_000, 0.001),
  ]:
    assert float(schedule(step)) == pytest.approx(lr)


def test_cosine_with_linear_warmup():
  config = default.get_config()
  config.schedule.warmup_steps = 10
  config.num_train_steps = 110
  schedule = _schedule(config)
  # Step 0 trains at lr / warmup_steps, not 0 (a step at lr 0 would only fill the momentum).
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(4)) == pytest.approx(0.05)
  assert float(schedule(9)) == pytest.approx(0.1)
  assert float(schedule(10)) == pytest.approx(0.1)
  assert float(schedule(60)) == pytest.approx(0.05)  # half way through the cosine
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)


def _run_sgd(config, params, grads_seq):
  opt = config.optimizer
  tx = optim.create_optimizer(
    optax.constant_schedule(opt.learning_rate),
    momentum=opt.momentum,
    nesterov=opt.nesterov,
    weight_decay=opt.weight_decay,
    decay_bn_and_bias=opt.decay_bn_and_bias,
  )
  state = tx.init(params)
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


@pytest.mark.parametrize('nesterov', [False, True])
@pytest.mark.parametrize('decay_bn_and_bias', [False, True])
def test_sgd_matches_torch_update_rule(nesterov, decay_bn_and_bias):
  config = default.get_config()
  config.optimizer.update(
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=0.01,
    nesterov=nesterov,
    decay_bn_and_bias=decay_bn_and_bias,
  )
  rng = np.random.default_rng(0)
  params = {'kernel': rng.normal(size=(3, 2)), 'bias': rng.normal(size=(2,))}
  grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(3)]
  ours = _run_sgd(
    config,
    {k: jnp.asarray(v) for k, v in params.items()},
    [{k: jnp.asarray(v) for k, v in g.items()} for g in grads_seq],
  )
  # torch.optim.SGD, written out: g += wd * p; buf = mu * buf + g; step = g + mu * buf (nesterov)
  expected = {k: v.copy() for k, v in params.items()}
  bufs = {k: None for k in params}
  for grads in grads_seq:
    for k in params:
      wd = 0.01 if (decay_bn_and_bias or k == 'kernel') else 0.0
      g = grads[k] + wd * expected[k]
      bufs[k] = g if bufs[k] is None else 0.9 * bufs[k] + g
      expected[k] = expected[k] - 0.1 * (g + 0.9 * bufs[k] if nesterov else bufs[k])
  for k in params:
    np.testing.assert_allclose(ours[k], expected[k], rtol=1e-5)


def test_epoch_units_give_the_schedule_of_their_steps():
  by_steps, by_epochs = default.get_config(), default.get_config()
  by_steps.schedule.update(name='piecewise', warmup_steps=390, boundaries=(39_000, 58_500))
  by_epochs.schedule.update(name='piecewise', warmup_epochs=1.0, boundary_epochs=(100, 150))
  steps, epochs = _schedule(by_steps), _schedule(by_epochs)  # 390 steps an epoch
  for step in (0, 200, 389, 390, 38_999, 39_000, 58_499, 58_500, 77_999):
    assert float(epochs(step)) == float(steps(step)), step
