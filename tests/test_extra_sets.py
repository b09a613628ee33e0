"""Other test sets: the tfds builders of CIFAR-10.1 and CIFAR-10-C on fixture files, --mode=eval
with them, the CIFAR-10-C mean, and offline."""

import shutil
import socket
import statistics
import subprocess

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from configs import resnet_test  # noqa: E402
from resnet_jax import cifar, evaluation, extra_sets, records, tfds_source, train  # noqa: E402
from resnet_jax import evaluate_checkpoint as evaluate_checkpoint_module  # noqa: E402
from resnet_jax.errors import UserError  # noqa: E402
from resnet_jax.evaluate_checkpoint import evaluate_checkpoint  # noqa: E402
from tests import fake_cifar  # noqa: E402
from tests.launching import launch  # noqa: E402
from tests.tfds_offline import prepare_offline  # noqa: E402

NOISE = 'cifar10_corrupted/gaussian_noise_5'


@pytest.fixture(scope='module')
def prepared(cifar_examples, tmp_path_factory):
  """A tfds data_dir where the real builders prepared cifar10_1 and NOISE from fixture files, and
  the hosts they asked for. Both hold cifar_dir's 20 test images: CIFAR-10.1 as they are, CIFAR-10-C
  at severity 5 of gaussian_noise (severities 1 to 4 are noise)."""
  files = tmp_path_factory.mktemp('extra_files')
  images, labels = cifar_examples.test_images, cifar_examples.test_labels
  fake_cifar.write_cifar10_1(files, images, labels)
  noise = np.random.default_rng(0).integers(0, 256, (4, *images.shape), dtype=np.uint8)
  fake_cifar.write_cifar10_c(
    files, {'gaussian_noise': np.concatenate([noise, images[None]])}, labels
  )
  data_dir = tmp_path_factory.mktemp('extra_tfds')
  hosts = prepare_offline(data_dir, files, ['cifar10_1', NOISE])
  return data_dir, hosts


@pytest.fixture(scope='module')
def trained(cifar_dir, tmp_path_factory):
  """The workdir and config of 4 steps of resnet_test on cifar_dir (the archive source)."""
  config = resnet_test.get_config()
  config.dataset.data_dir = str(cifar_dir)
  config.num_train_steps = 4
  workdir = tmp_path_factory.mktemp('trained')
  train.train_and_evaluate(config, str(workdir))
  return workdir, config


def _copy(trained, tmp_path):
  workdir, config = trained
  shutil.copytree(workdir, tmp_path / 'run')
  return tmp_path / 'run', config.copy_and_resolve_references()


def _sorted_rows(images, labels):
  return sorted(image.tobytes() + bytes([label]) for image, label in zip(images, labels))


def test_the_names_are_those_of_the_tfds_builders(tmp_path):
  from tensorflow_datasets.image_classification import cifar10_1, cifar10_corrupted

  assert extra_sets.BENCHMARK_CORRUPTIONS == tuple(cifar10_corrupted.BENCHMARK_CORRUPTIONS)
  assert extra_sets.HOLDOUT_CORRUPTIONS == tuple(cifar10_corrupted.EXTRA_CORRUPTIONS)
  configs = cifar10_corrupted.Cifar10Corrupted.BUILDER_CONFIGS
  assert sorted(extra_sets.ALL_CORRUPTED) == sorted(f'cifar10_corrupted/{c.name}' for c in configs)
  assert extra_sets.CIFAR10_1_VERSIONS == tuple(c.name for c in cifar10_1.Cifar10_1.BUILDER_CONFIGS)
  assert tfds.builder('cifar10_1', data_dir=str(tmp_path)).builder_config.name == 'v4'
  assert set(extra_sets.LABELS) <= set(tfds_source.DOWNLOAD_HOSTS)
  assert extra_sets.expand(['cifar10_1', 'cifar10_corrupted', NOISE]) == (
    'cifar10_1',
    *extra_sets.ALL_CORRUPTED,
  )


def test_the_real_builders_prepare_the_fixture_files(prepared, cifar_examples, monkeypatch):
  data_dir, hosts = prepared
  assert hosts == {
    tfds_source.DOWNLOAD_HOSTS['cifar10_1'],
    tfds_source.DOWNLOAD_HOSTS['cifar10_corrupted'],
  }
  expected = _sorted_rows(cifar_examples.test_images, cifar_examples.test_labels)
  for name in ('cifar10_1', NOISE):  # tfds shuffles the records: compared in any order
    (split,) = tfds_source.load(name, str(data_dir), ('test',))
    assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
    assert _sorted_rows(split.images, split.labels) == expected, name
  monkeypatch.setattr(subprocess, 'run', None)  # prepared: a second prepare starts no child
  tfds_source.prepare(['cifar10_1', NOISE], str(data_dir))


def test_eval_mode_reports_the_extra_sets_beside_the_test_split(
  prepared, trained, cifar_dir, tmp_path
):
  workdir, config = _copy(trained, tmp_path)
  result = launch(
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    '--config.num_train_steps=4',
    f'--workdir={workdir}',
    '--mode=eval',
    f"--config.eval.extra_datasets=('cifar10_1', '{NOISE}')",
    f'--config.eval.extra_data_dir={prepared[0]}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'eval {NOISE} at step 4: loss' in result.stderr
  saved = records.read_json(str(workdir / 'eval_4.json'))
  assert set(saved) == {'step', 'test', 'cifar10_1', NOISE}
  test = saved['test']
  assert 0 <= test['top1'] <= test['top5'] <= 1 and np.isfinite(test['loss'])
  for name in ('cifar10_1', NOISE):
    # The test images again, so the same numbers: normalised as in training, each counted once.
    result = saved[name]
    assert result['count'] == 20 and result['replicas'][0]['seed'] == config.seed
    assert result['top1'] == test['top1'] and result['top5'] == test['top5'], name
    assert result['loss'] == pytest.approx(test['loss'], rel=1e-5), name


def test_eval_mode_offline_says_what_to_do_before_building_the_run(trained, tmp_path, monkeypatch):
  workdir, config = _copy(trained, tmp_path)
  config.eval.extra_datasets = ('cifar10_1',)
  config.eval.extra_data_dir = str(tmp_path / 'none')

  def unreachable(address, timeout=None):
    raise OSError(101, 'Network is unreachable')

  monkeypatch.setattr(socket, 'create_connection', unreachable)
  monkeypatch.setattr(evaluate_checkpoint_module, 'setup', None)  # called, it would fail
  with pytest.raises(UserError) as error:
    evaluate_checkpoint(config, str(workdir))
  message = str(error.value)
  for words in ('cifar10_1 is not prepared', 'github.com cannot be reached', 'network once'):
    assert words in message, message
  assert not (workdir / 'eval_4.json').exists()


def _wrong_labels(name, images, labels):
  """The images with the first few labels wrong, as many (0 to 7) as the set's index gives, so
  that each set has its own numbers and every mean is of different ones."""
  wrong = np.arange(len(labels)) < extra_sets.ALL_CORRUPTED.index(name) % 8
  return cifar.Split(images, np.where(wrong, (labels + 1) % 10, labels).astype(np.int32))


def test_the_cifar10_c_shorthand_means_the_benchmark_and_reports_the_holdout_apart(
  trained, cifar_examples, tmp_path, monkeypatch
):
  workdir, config = _copy(trained, tmp_path)
  config.eval.extra_datasets = ('cifar10_corrupted',)
  asked = []
  monkeypatch.setattr(tfds_source, 'prepare', lambda names, data_dir: asked.extend(names))
  images, labels = cifar_examples.test_images[:8], cifar_examples.test_labels[:8]
  monkeypatch.setattr(
    tfds_source, 'load', lambda name, data_dir, splits: (_wrong_labels(name, images, labels),)
  )
  results = evaluate_checkpoint(config, str(workdir))
  assert asked == list(extra_sets.ALL_CORRUPTED)
  assert set(extra_sets.ALL_CORRUPTED) < set(results)
  benchmark = [
    f'cifar10_corrupted/{c}_{s}' for c in extra_sets.BENCHMARK_CORRUPTIONS for s in range(1, 6)
  ]
  holdout = [name for name in extra_sets.ALL_CORRUPTED if name not in benchmark]
  assert len(benchmark) == 75 and len(holdout) == 20
  for key, members in (('cifar10_corrupted', benchmark), (extra_sets.HOLDOUT_KEY, holdout)):
    mean = results[key]
    assert mean['splits'] == len(members) and mean['count'] == 8 * len(members)
    for metric in ('loss', 'top1', 'top5'):
      expected = statistics.fmean(results[name][metric] for name in members)
      assert mean[metric] == pytest.approx(expected), (key, metric)
    assert mean['error'] == pytest.approx(1 - mean['top1'])
  # The held-out corruptions are not in the benchmark's mean.
  everything = statistics.fmean(results[name]['loss'] for name in extra_sets.ALL_CORRUPTED)
  assert results['cifar10_corrupted']['loss'] != pytest.approx(everything)
  saved = records.read_json(str(workdir / 'eval_4.json'))
  assert saved['cifar10_corrupted'] == results['cifar10_corrupted']


def test_the_mean_of_several_splits_is_each_replicas_mean_then_summarised():
  seeds, diverged_at = [7, 8, 9], [3, 0, 0]  # replica 0 diverged at step 3
  splits = [
    evaluation.summarize([{'top1': t} for t in top1s], seeds, diverged_at, count)
    for top1s, count in (([0.1, 0.5, 0.7], 10), ([0.2, 0.7, 0.9], 30))
  ]
  mean = evaluation.mean_of(splits, seeds)
  assert mean['splits'] == 2 and mean['count'] == 40 and mean['live_replicas'] == 2
  assert mean['replicas'][0] == {'replica': 0, 'seed': 7, 'diverged_at': 3}
  assert [r['top1'] for r in mean['replicas'][1:]] == [pytest.approx(0.6), pytest.approx(0.8)]
  assert mean['top1'] == pytest.approx(0.7) and mean['top1_std'] == pytest.approx(0.02**0.5)
