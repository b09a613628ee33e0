"""The reproduction queue: the published results this project measures itself against, in order.

Each entry is a config file, its overrides, the framework that trains it, how many seeds it needs
(5, as the paper reports ResNet-110) and the number it is compared with, with its source.
tools/reproduce.py advances the queue a GPU window at a time; tools/results.py --paper draws the
paper's Table 6 and Figure 6 from what it committed. The order is the order of work: the first
four make the paper's Figure 6 at full length.

An entry is identified by its config and overrides: a committed run is one of its seeds when
provenance.json's command names the same config file and the same overrides, leaving aside those
that change no result (BOOKKEEPING: paths, cadences, seeds, replicas). Only the standard library:
tools/results.py reads the queue without JAX.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

from resnet_jax import records
from tools.runs import BOOKKEEPING, NOT_EXPERIMENT, Run

HE_2015 = 'He et al. 2015 (arXiv:1512.03385), Table 6'
FIGURE_6 = 'He et al. 2015, Figure 6 (curves only)'
KUANGLIU = (
  'kuangliu/pytorch-cifar README (93.02% accuracy: the best epoch of one run, of its earlier '
  '350-epoch recipe)'
)
DEVRIES = 'DeVries & Taylor 2017 (arXiv:1708.04552), Table 1 (mean of 5 runs, last epoch)'
KUANGLIU_PREACT = 'kuangliu/pytorch-cifar README (PreActResNet18: 95.11% accuracy)'
HE_2016 = "He et al. 2016 (arXiv:1603.05027), Table 3; median of 5 as Zagoruyko's README quotes it"
WRN_README = 'szagoruyko/wide-residual-networks README (meanstd, median of 5 runs)'
WRN_TABLE_5 = 'Zagoruyko and Komodakis 2016 (arXiv:1605.07146), Table 5 (meanstd)'


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str  # the entry's folder under results/*/reproduction/
  config: str  # a config file, with its argument if any: 'configs/paper_cifar.py:plain20'
  published_error: float | None  # test error in percent; None where the source gives a curve
  published_text: str  # the number as the source gives it
  source: str
  overrides: tuple[str, ...] = ()  # 'field=value', as after --config.
  framework: str = 'jax'  # 'jax': launch.py; 'pytorch': tools/parity.py's reference run
  seeds: int = 5
  figure6: bool = False  # drawn in the paper's Figure 6
  net: str = ''  # the net as the tables name it; '': runs.net_name of `name`

  def launch_args(self) -> list[str]:
    return [f'--config={self.config}', *(f'--config.{item}' for item in self.overrides)]


PAPER = (
  Entry('resnet20', 'configs/resnet20.py', 8.75, '8.75', HE_2015, figure6=True),
  Entry('plain20', 'configs/paper_cifar.py:plain20', None, 'curve', FIGURE_6, figure6=True),
  Entry('resnet56', 'configs/resnet56.py', 6.97, '6.97', HE_2015, figure6=True),
  Entry('plain56', 'configs/paper_cifar.py:plain56', None, 'curve', FIGURE_6, figure6=True),
  Entry('resnet110', 'configs/resnet110.py', 6.61, '6.43 best, 6.61 ± 0.16 (5 runs)', HE_2015),
  Entry('resnet32', 'configs/resnet32.py', 7.51, '7.51', HE_2015),
  Entry('resnet44', 'configs/resnet44.py', 7.17, '7.17', HE_2015),
  Entry('resnet18', 'configs/resnet18.py', 6.98, '6.98 (best epoch)', KUANGLIU),
  Entry(
    'resnet20_pytorch',
    'configs/resnet20.py',
    8.75,
    '8.75',
    HE_2015 + '; against our JAX ResNet-20 on the same batches',
    framework='pytorch',
  ),
  Entry(
    'resnet18_cutout',
    'configs/resnet18_cutout.py',
    3.99,
    '3.99 (5 runs)',
    DEVRIES,
    net='ResNet-18 + cutout',
  ),
  Entry(
    'preact_resnet18', 'configs/preact_resnet18.py', 4.89, '4.89 (95.11% accuracy)', KUANGLIU_PREACT
  ),
  Entry('preact_resnet164', 'configs/preact_cifar.py:preact_resnet164', 5.46, '5.46', HE_2016),
  Entry('preact_resnet1001', 'configs/preact_cifar.py:preact_resnet1001', 4.92, '4.92', HE_2016),
  Entry('wrn16_8', 'configs/wide_resnet.py:wrn16_8', 4.27, '4.27', WRN_TABLE_5),
  Entry('wrn28_10', 'configs/wide_resnet.py:wrn28_10', 4.00, '4.00', WRN_README),
  Entry(
    'wrn28_10_dropout',
    'configs/wide_resnet.py:wrn28_10',
    3.89,
    '3.89',
    WRN_README,
    overrides=('model.dropout_rate=0.3',),
  ),
)

# For the tests and a dry run on a CPU: a tiny net of a few steps with two seeds, then one too
# long for any window.
TEST = (
  Entry(
    'tiny',
    'configs/resnet_test.py',
    None,
    'none',
    'a dry run',
    overrides=('num_train_steps=12', 'eval_every_steps=6'),
    seeds=2,
  ),
  Entry(
    'tiny_long', 'configs/resnet_test.py', None, 'none', 'a dry run', ('num_train_steps=99999',)
  ),
)

QUEUES = {'paper': PAPER, 'test': TEST}


def command_identity(command: list[str]) -> tuple[str, tuple[str, ...]] | None:
  """The config file and the result-changing overrides a recorded command ran with."""
  config = next((arg.split('=', 1)[1] for arg in command if arg.startswith('--config=')), None)
  if config is None:
    return None
  overrides = [arg[len('--config.') :] for arg in command if arg.startswith('--config.')]
  ignored = BOOKKEEPING + NOT_EXPERIMENT
  return config, tuple(sorted(o for o in overrides if o.split('=', 1)[0] not in ignored))


def is_seed_of(run: Run, entry: Entry) -> bool:
  """Whether run trained entry's recipe, in entry's framework."""
  own = command_identity([f'--config={entry.config}', *entry.launch_args()[1:]])
  framework = 'pytorch' if entry.framework == 'pytorch' else 'jax'
  return run.framework == framework and command_identity(run.provenance.get('command', [])) == own


def seeds_of(entry: Entry, runs: list[Run]) -> list[Run]:
  """entry's runs that count: those that trained to their last step (a diverged one counts, and
  is marked wherever it is shown), in seed order."""
  mine = [run for run in runs if is_seed_of(run, entry) and not run.stopped_early]
  return sorted(mine, key=lambda run: run.config['seed'])


def newest_projections(
  results_dir: str, device_kind: str | None = None
) -> dict[str, dict[str, Any]]:
  """Each entry's newest projection.json under results_dir (by its date; the last path on a
  tie), of one device kind or of any.

  tools/reproduce.py leaves one beside an entry's runs each time a window probed it: the
  measured step time, the projected time of one seed, and whether that fits a window (`fits`).
  """
  newest: dict[str, dict[str, Any]] = {}
  pattern = os.path.join(results_dir, '**', 'projection.json')
  for path in sorted(glob.glob(pattern, recursive=True)):
    projection = records.read_json(path)
    if device_kind is not None and projection['device_kind'] != device_kind:
      continue
    name = projection['entry']
    if name not in newest or projection['date'] >= newest[name]['date']:
      newest[name] = projection
  return newest
