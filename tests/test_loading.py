"""A trained run read back: resnet_jax.load_run (its checkpoint in Python, on one device, without
its dataset), and --mode=eval where the config or the workdir does not fit."""

import json
import re
import shutil

import jax
import numpy as np
import pytest

import resnet_jax
from resnet_jax import archive_source, augment, cifar, data, guards, records, train_step
from resnet_jax.errors import UserError
from tests.launching import REPO, launch, read_only


@pytest.fixture(scope='module')
def trained(cifar_dir, tmp_path_factory):
  """resnet_test, 2 replicas, trained and then evaluated (--mode=eval) on 4 devices."""
  workdir = tmp_path_factory.mktemp('run')
  args = (
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={workdir}',
    '--config.num_replicas=2',
  )
  for mode in ('train', 'eval'):
    result = launch(*args, f'--mode={mode}')
    assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.fixture(scope='module')
def run(trained):
  return resnet_jax.load_run(str(trained))


def test_load_run_restores_every_replica_onto_one_device_and_reads_no_data(trained, monkeypatch):
  def no_data(*args):
    raise AssertionError('load_run read a dataset')

  monkeypatch.setattr(data, 'load', no_data)
  monkeypatch.setattr(archive_source, 'load', no_data)
  run = resnet_jax.load_run(str(trained))
  assert (run.step, run.replicas, run.seeds, run.diverged_at) == (8, (0, 1), (0, 1), (0, 0))
  assert run.config.model.name == 'resnet_test' and run.state.opt_state is None
  for leaf in jax.tree.leaves(run.variables):
    assert leaf.shape[0] == 2 and leaf.devices() == {jax.devices()[0]}
  assert resnet_jax.load_run(str(trained), step=4).step == 4


def test_predict_normalises_batches_and_pads_any_count(run, cifar_examples):
  images = cifar_examples.test_images
  logits = run.predict(images[:5])
  assert logits.shape == (2, 5, 10) and logits.dtype == np.float32
  # As the model computes them on normalised images, one replica at a time.
  normalised = augment.normalize(
    images[:5], cifar.CHANNEL_MEAN['cifar10'], cifar.CHANNEL_STD['cifar10']
  )
  for k in range(2):
    variables = train_step.replica(run.variables, k)
    expected = run.model.apply(variables, normalised, train=False)
    np.testing.assert_allclose(logits[k], expected, rtol=1e-5, atol=1e-5)
  # 13 images: a whole batch of 8 and a padded one; the padding changes nothing.
  np.testing.assert_allclose(run.predict(images[:13])[:, :5], logits, rtol=1e-5, atol=1e-6)
  assert run.predict(images[:0]).shape == (2, 0, 10)


def test_evaluate_gives_what_mode_eval_wrote(trained, run, cifar_examples):
  ours = run.evaluate(cifar_examples.test_images, cifar_examples.test_labels)
  # --mode=eval ran on 4 devices; load_run restored onto one.
  written = json.loads((trained / 'eval_8.json').read_text())['test']
  assert sorted(ours) == sorted(written)
  for got, expected in zip([ours, *ours['replicas']], [written, *written['replicas']]):
    assert got['top1'] == expected['top1'] and got['top5'] == expected['top5']
    assert got['loss'] == pytest.approx(expected['loss'], rel=1e-6)
  assert [(r['replica'], r['seed']) for r in ours['replicas']] == [(0, 0), (1, 1)]
  # The logits of predict give the same top-1, replica by replica.
  classes = run.predict(cifar_examples.test_images).argmax(-1)
  top1 = (classes == np.asarray(cifar_examples.test_labels)).mean(-1)
  # (The same counts: over 20 images, top-1s that differ are at least 0.05 apart.)
  assert top1.tolist() == pytest.approx([r['top1'] for r in written['replicas']], abs=1e-6)


def test_one_replica_loads_alone(trained, run, cifar_examples):
  images, labels = cifar_examples.test_images, cifar_examples.test_labels
  second = resnet_jax.load_run(str(trained), replica=1)
  assert (second.replicas, second.seeds) == ((1,), (1,))
  assert jax.tree.map(np.shape, second.variables) == jax.tree.map(
    np.shape, train_step.replica(run.variables, 1)
  )
  # One replica alone against two vmapped: the same up to float rounding.
  np.testing.assert_allclose(
    second.predict(images[:5]), run.predict(images[:5])[1], rtol=1e-5, atol=1e-6
  )
  result = second.evaluate(images, labels)
  assert result['replicas'][0]['replica'] == 1
  assert result['top1'] == run.evaluate(images, labels)['replicas'][1]['top1']


def test_bad_input_is_refused_saying_what_to_do(trained, run, cifar_examples, tmp_path):
  images, labels = cifar_examples.test_images, cifar_examples.test_labels
  config_only = tmp_path / 'config_only'
  config_only.mkdir()
  shutil.copy(trained / 'config.json', config_only)
  refusals = [
    (lambda: resnet_jax.load_run(str(tmp_path / 'nothing')), 'No config.json in'),
    (lambda: resnet_jax.load_run(str(config_only)), 'No checkpoints in'),
    (lambda: resnet_jax.load_run(str(trained), step=3), r'the saved steps are \[4, 8\]'),
    (lambda: resnet_jax.load_run(str(trained), replica=2), r'2 replica\(s\), 0 to 1'),
    (lambda: run.predict(images.astype(np.float32)), 'must be uint8 .* got float32'),
    (lambda: run.predict(images[0]), r'got uint8 of shape \(32, 32, 3\)'),
    (lambda: run.evaluate(images, labels[:-1]), r'labels must be 20 integer classes'),
    (lambda: run.evaluate(images, labels + 10), r'in \[0, 10\)'),
  ]
  for call, message in refusals:
    with pytest.raises(UserError, match=message):
      call()


def test_eval_under_another_model_says_what_the_checkpoints_hold(trained, cifar_dir):
  from configs import resnet_test
  from resnet_jax.evaluate_checkpoint import evaluate_checkpoint

  config = resnet_test.get_config()
  config.model.name = 'resnet20'
  config.dataset.data_dir = str(cifar_dir)
  with pytest.raises(UserError) as refused:
    evaluate_checkpoint(config, str(trained))
  assert str(refused.value).splitlines() == [
    f'The checkpoints in {trained} are of 2 replicas of resnet_test on cifar10 (its config.json); '
    "this command asks for resnet20 on cifar10 (model.name: 'resnet_test' -> 'resnet20'; "
    'num_replicas: 2 -> 1).',
    "Drop --config to use the run's own config.json, or pass the config that trained it.",
  ]
  # What does not shape the checkpoint's tree may change for an eval: the dtype, for one.
  config = resnet_test.get_config()
  config.num_replicas, config.model.dtype = 2, 'bfloat16'
  guards.check_same_model(records.read_config(str(trained)), config, str(trained))


def test_a_read_only_workdir_stops_training_at_once_and_eval_prints_the_results(trained, tmp_path):
  folder = tmp_path / 'read_only'
  shutil.copytree(trained, folder / 'run', ignore=shutil.ignore_patterns('eval_*.json'))
  with read_only(folder) as prefix:
    # Refused before the data is read: this data_dir holds none.
    refused = launch(
      '--config=configs/resnet_test.py',
      f'--config.dataset.data_dir={tmp_path}',
      f'--workdir={folder / "new"}',
      prefix=prefix,
    )
    evaluated = launch(f'--workdir={folder / "run"}', '--mode=eval', prefix=prefix)
  assert refused.returncode == 2 and 'Traceback' not in refused.stderr, refused.stderr
  assert f'Cannot write to the workdir {folder / "new"}: {folder} is ' in refused.stderr
  assert 'cifar-10-binary' not in refused.stderr
  assert evaluated.returncode == 0 and 'Traceback' not in evaluated.stderr, evaluated.stderr
  assert f'Could not write {folder / "run" / "eval_8.json"}' in evaluated.stderr
  assert json.loads(evaluated.stdout) == json.loads((trained / 'eval_8.json').read_text())
  assert not list((folder / 'run').glob('eval_*.json'))


def test_the_snippet_of_docs_using_a_run_runs(trained, capsys):
  doc = (REPO / 'docs' / 'using-a-run.md').read_text()
  snippet = re.search(r'```python\n(.*?)```', doc, re.DOTALL).group(1)
  assert len(snippet.strip().splitlines()) <= 6  # five lines and a blank one
  exec(snippet.replace("'runs/quick'", repr(str(trained))), {})
  printed = capsys.readouterr().out
  assert "'top1':" in printed and "'count': 20" in printed
