"""A run SIGKILLed mid-run (once while a checkpoint is being written) and started again ends bit
for bit where an uninterrupted run ends. Three of tests/stress/kill_trials.py's trials, with its
functions; `python -m tests.stress.kill_trials` runs many more."""

import random
import tempfile

import pytest

from tests.stress import kill_trials

# One persistent compilation cache for every child of this module.
COMPILATION_CACHE = tempfile.mkdtemp(prefix='resnet_jax_kill_test_cache_')


@pytest.fixture(scope='module')
def reference(cifar_dir, tmp_path_factory):
  """Two uninterrupted runs (make_reference checks they are identical); the second is timed.

  cifar_dir (tests/conftest.py) is the archive kill_trials.write_archive writes for the script.
  """
  return kill_trials.make_reference(
    cifar_dir, tmp_path_factory.mktemp('reference'), COMPILATION_CACHE
  )


def _check(result, reference):
  comparison = result.comparison
  assert not comparison.duplicates, comparison.duplicates
  assert comparison.step == reference.step == kill_trials.TOTAL_STEPS
  assert comparison.identical, comparison.problems()


def test_killed_while_saving_resumes_bit_for_bit(reference, cifar_dir, tmp_path):
  # The save of step 12: the third of the six, after two complete checkpoints.
  kill = kill_trials.KillDuringSave(which=0.4, delay_s=0.01)
  result = kill_trials.run_trial([kill], cifar_dir, tmp_path, COMPILATION_CACHE, reference)
  (record,) = result.kills
  assert record.killed and record.during_save == 12, record
  # The half-written checkpoint is not restored: the run resumes from the one before.
  assert result.resumed_from == [8]
  _check(result, reference)


@pytest.mark.parametrize('trial', [0, 5])  # seeds of the kill times
def test_killed_at_a_random_moment_resumes_bit_for_bit(reference, cifar_dir, tmp_path, trial):
  seconds = random.Random(trial).uniform(0, reference.seconds)
  result = kill_trials.run_trial(
    [kill_trials.KillAtTime(seconds)], cifar_dir, tmp_path, COMPILATION_CACHE, reference
  )
  (record,) = result.kills
  (resumed,) = result.resumed_from
  if record.killed:  # a complete checkpoint at the kill is the one resumed from
    assert resumed == record.last_checkpoint, (record, resumed)
  _check(result, reference)


def test_the_script_trains_on_the_archive_the_tests_do(cifar_examples, tmp_path):
  from resnet_jax import archive_source  # pylint: disable=g-import-not-at-top

  train, test = archive_source.load('cifar10', str(kill_trials.write_archive(tmp_path)))
  for ours, theirs in (
    (train.images, cifar_examples.train_images),
    (train.labels, cifar_examples.train_labels),
    (test.images, cifar_examples.test_images),
    (test.labels, cifar_examples.test_labels),
  ):
    assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()
