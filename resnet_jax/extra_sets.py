"""Other test sets of a CIFAR-10 model, CIFAR-10.1 and CIFAR-10-C, by their tfds names.

config.eval.extra_datasets names them; --mode=eval prepares each through tfds (tfds_source.py)
and evaluates it beside the test split. Only the standard library: validation.py checks the names
before anything loads, and tfds_source's child process expands them.
"""

from collections.abc import Sequence
from typing import Any

from resnet_jax.errors import UserError

CIFAR10_1 = 'cifar10_1'
CORRUPTED = 'cifar10_corrupted'
# tfds's configs of CIFAR-10.1; the plain name is tfds's default, v4 (the paper's main numbers).
CIFAR10_1_VERSIONS = ('v4', 'v6')
# CIFAR-10-C's 15 benchmark corruptions (Hendrycks & Dietterich, 2019) in the paper's order,
# under tfds's names: frosted_glass_blur is the paper's glass_blur, elastic its
# elastic_transform.
BENCHMARK_CORRUPTIONS = (
  'gaussian_noise',
  'shot_noise',
  'impulse_noise',
  'defocus_blur',
  'frosted_glass_blur',
  'motion_blur',
  'zoom_blur',
  'snow',
  'frost',
  'fog',
  'brightness',
  'contrast',
  'elastic',
  'pixelate',
  'jpeg_compression',
)
# The 4 more tfds has: the paper's held-out corruptions (for tuning), outside the benchmark mean.
HOLDOUT_CORRUPTIONS = ('gaussian_blur', 'saturate', 'spatter', 'speckle_noise')
SEVERITIES = (1, 2, 3, 4, 5)
HOLDOUT_KEY = f'{CORRUPTED}/holdout'  # where eval_<step>.json puts the held-out ones' mean
# The dataset whose classes label each test set: only its models are evaluated on it.
LABELS = {CIFAR10_1: 'cifar10', CORRUPTED: 'cifar10'}


def _corrupted(corruptions: Sequence[str]) -> tuple[str, ...]:
  return tuple(f'{CORRUPTED}/{c}_{s}' for c in corruptions for s in SEVERITIES)


ALL_CORRUPTED = _corrupted(BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS)
NAMES = (CIFAR10_1, *(f'{CIFAR10_1}/{v}' for v in CIFAR10_1_VERSIONS), CORRUPTED, *ALL_CORRUPTED)


def family(name: str) -> str:
  """The tfds dataset of a name that may carry a config: 'cifar10_corrupted/fog_1' -> its own."""
  return name.split('/')[0]


def expand(names: Sequence[str]) -> tuple[str, ...]:
  """The tfds datasets `names` evaluate, each once, in order; CORRUPTED is all 95 of its configs.

  Other names are tfds names already and pass through.
  """
  expanded: dict[str, None] = {}  # ordered, without repeats
  for name in names:
    expanded.update(dict.fromkeys(ALL_CORRUPTED if name == CORRUPTED else (name,)))
  return tuple(expanded)


def means(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
  """The means to report, each over its tfds datasets.

  CORRUPTED: the CIFAR-10-C benchmark's mean over its 15 corruptions at 5 severities; HOLDOUT_KEY:
  the 4 held-out corruptions', apart.
  """
  if CORRUPTED not in names:
    return {}
  return {
    CORRUPTED: _corrupted(BENCHMARK_CORRUPTIONS),
    HOLDOUT_KEY: _corrupted(HOLDOUT_CORRUPTIONS),
  }


def check(names: Any, dataset: str) -> None:
  """Refuses a value of config.eval.extra_datasets that is not a tuple of known test sets of
  `dataset`'s classes."""
  if not isinstance(names, (tuple, list)):
    raise UserError(
      f'config.eval.extra_datasets={names!r} must be a tuple of names, e.g. '
      "\"('cifar10_1', 'cifar10_corrupted')\"."
    )
  for name in names:
    if name not in NAMES:
      raise UserError(
        f'config.eval.extra_datasets has {name!r}, which is not a test set this project knows: '
        f"use '{CIFAR10_1}' (CIFAR-10.1 v4; or '{CIFAR10_1}/v4', '{CIFAR10_1}/v6'), "
        f"'{CORRUPTED}' (all of CIFAR-10-C, with the benchmark's mean), or "
        f"'{CORRUPTED}/<corruption>_<severity>' with a severity from 1 to 5 and a corruption "
        f'of {BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS}.'
      )
    if LABELS[family(name)] != dataset:
      raise UserError(
        f'config.eval.extra_datasets has {name!r}, whose labels are the classes of '
        f'{LABELS[family(name)]}, but this run trains a {dataset} model. Remove it from '
        f'--config.eval.extra_datasets, or evaluate a {LABELS[family(name)]} run.'
      )
