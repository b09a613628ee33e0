"""Durations in steps or epochs, resolved once; the chunk plan of the jitted calls."""

import itertools

import jax
import numpy as np
import pytest

from configs import default, resnet18_fast
from resnet_jax import parallel, timeline, train_step


def _timeline(**fields) -> timeline.Timeline:
  values = dict(
    epoch_steps=390,
    total_steps=1000,
    warmup_steps=0,
    boundaries=(),
    log_every=100,
    eval_every=390,
    checkpoint_every=390,
    steps_per_call=4,
  )
  return timeline.Timeline(**{**values, **fields})


def _calls(plan: timeline.Timeline, start: int = 0) -> list[tuple[int, int]]:
  """(first step, length) of every call from `start` to the end."""
  calls, step = [], start
  while step < plan.total_steps:
    for length in plan.call_lengths(step):
      calls.append((step, length))
      step += length
  return calls


def test_epoch_fields_resolve_from_the_real_epoch_length():
  config = default.get_config()
  config.update(
    batch_size=128, num_epochs=10, eval_every_epochs=0.5, log_every_steps=0, log_every_epochs=2.0
  )
  config.schedule.update(name='piecewise', warmup_epochs=1.0, boundary_epochs=(5, 7.5))
  # 45,000 examples once a validation split of 5,000 is held out: 351 steps an epoch.
  plan = timeline.resolve(config, 45_000)
  assert plan.epoch_steps == 351
  assert plan.total_steps == 3510
  assert plan.warmup_steps == 351
  assert plan.boundaries == (1755, 2632)  # 7.5 epochs: 2632.5 rounds to even
  assert (plan.log_every, plan.eval_every, plan.checkpoint_every) == (702, 176, 351)


def test_steps_win_where_given_and_a_tiny_fraction_is_one_step():
  config = default.get_config()
  config.update(
    num_train_steps=64_000,
    checkpoint_every_steps=2000,
    checkpoint_every_epochs=0.0,
    eval_every_epochs=0.0001,
  )
  config.schedule.boundaries = (32_000, 48_000)
  plan = timeline.resolve(config, 50_000)
  assert plan.total_steps == 64_000
  assert plan.boundaries == (32_000, 48_000)
  assert plan.checkpoint_every == 2000
  assert plan.eval_every == 1


def test_resnet18_fast_keeps_its_measured_step_counts():
  plan = timeline.resolve(resnet18_fast.get_config(), 50_000)
  assert (plan.epoch_steps, plan.total_steps, plan.warmup_steps) == (97, 2910, 194)
  assert (plan.log_every, plan.eval_every, plan.checkpoint_every) == (97, 97, 485)


def test_calls_end_on_every_eval_checkpoint_and_epoch_step_in_power_of_two_pieces():
  plan = _timeline(
    epoch_steps=390, total_steps=1000, eval_every=45, checkpoint_every=130, steps_per_call=8
  )
  calls = _calls(plan)
  ends = {start + length for start, length in calls}
  stops = {s for s in range(1, 1001) if s % 45 == 0 or s % 130 == 0 or s % 390 == 0}
  assert stops | {1000} <= ends
  assert sum(length for _, length in calls) == 1000
  assert {length for _, length in calls} == {8, 4, 2, 1}
  # A call starting on a multiple of 8 with no stop inside its 8 steps runs them all.
  assert all(
    length == 8
    for start, length in calls
    if start % 8 == 0 and not any(start < s < start + 8 for s in stops | {1000})
  )


@pytest.mark.parametrize(
  'k, eval_every, checkpoint_every, epoch',
  [(4, 390, 390, 390), (6, 7, 50, 97), (5, 3, 11, 13), (16, 100, 1000, 390)],
)
def test_a_run_resumed_at_any_call_boundary_makes_the_same_calls(
  k, eval_every, checkpoint_every, epoch
):
  plan = _timeline(
    steps_per_call=k,
    eval_every=eval_every,
    checkpoint_every=checkpoint_every,
    epoch_steps=epoch,
    total_steps=1500,
  )
  calls = _calls(plan)
  for start, _ in calls[1:]:
    assert _calls(plan, start) == [c for c in calls if c[0] >= start], start


def test_chunk_stops_name_only_the_periods_that_are_no_multiple_of_steps_per_call():
  assert (
    _timeline(
      steps_per_call=4, eval_every=400, checkpoint_every=2000, epoch_steps=388
    ).chunk_stops()
    == ()
  )
  assert _timeline(
    steps_per_call=4, eval_every=390, checkpoint_every=390, epoch_steps=390
  ).chunk_stops() == (390,)
  assert _timeline(steps_per_call=1, eval_every=7, checkpoint_every=3).chunk_stops() == ()


def test_the_order_computed_once_an_epoch_gives_the_batches_of_the_per_step_permutation():
  # Until this round the step drew its epoch's permutation itself; resumes of older runs and
  # the committed results rely on the same batches.
  mesh = parallel.make_mesh()
  _, perm_key, aug_key = train_step.run_keys(3)
  n, batch, epoch_steps = 40, 8, 5
  images = jax.numpy.arange(n * 32 * 32 * 3, dtype=jax.numpy.uint8).reshape(n, 32, 32, 3)
  labels = jax.numpy.arange(n, dtype=jax.numpy.int32)
  for step in itertools.chain(range(0, 12), [57]):
    order = train_step.epoch_order(perm_key, step // epoch_steps, n, mesh)
    _, got = train_step.global_batch(
      step,
      images,
      labels,
      order,
      aug_key=aug_key,
      batch_size=batch,
      epoch_steps=epoch_steps,
      mean=(0.0,) * 3,
      std=(1.0,) * 3,
      mesh=mesh,
    )
    old = jax.random.permutation(jax.random.fold_in(perm_key, step // epoch_steps), n)
    expected = old[(step % epoch_steps) * batch :][:batch]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
