"""Runs one config over several seeds, one seed after another, each into ROOT/seed<k>.

  python -m tools.sweep --config=configs/resnet20_short.py --seeds=0,1 \\
      --workdir_root=runs/resnet20_short [--parity] [-- --config.FIELD=VALUE ...]

For each seed k, in the order given, it runs, in the repository root,

  python -m launch --config=CONFIG --config.seed=k --workdir=ROOT/seed<k> [--config.* ...]

or, with --parity, `python -m tools.parity` with the same flags, which writes the JAX run to
ROOT/seed<k>/jax and the PyTorch reference's to ROOT/seed<k>/torch (each a run workdir whose
provenance.json says its 'framework'). Everything after `--` is passed to every run; it may only
be --config.* overrides, and not --config.seed. The runs of one sweep therefore differ only in
config.seed. CONFIG and ROOT are read from where the sweep was started (and handed on relative to
the repository root when inside it, absolute otherwise); relative paths in the overrides (a
dataset.data_dir) are read from the repository root.

Each run's output is appended to ROOT/seed<k>/sweep.log. Run the same command again to resume:
launch continues each run from its newest checkpoint and finishes at once where it is done
(tools.parity resumes both of its runs the same way and reads finished ones back). The sweep
stops at the first run that fails, without starting the seeds after it, and exits with that
run's status (75: stopped by SIGTERM or SIGINT after saving; run the command again).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """(the sweep's own flags, the --config.* overrides after `--`)."""
  own, extra = (
    (argv[: argv.index('--')], argv[argv.index('--') + 1 :]) if '--' in argv else (argv, [])
  )
  parser = argparse.ArgumentParser(description='Runs one config over several seeds.')
  parser.add_argument('--config', required=True, help='a config file, e.g. configs/resnet20.py')
  parser.add_argument('--seeds', required=True, help='comma-separated seeds, e.g. 0,1,2')
  parser.add_argument('--workdir_root', required=True, help='seed k trains in ROOT/seed<k>')
  parser.add_argument(
    '--parity', action='store_true', help='run tools.parity (JAX and PyTorch) instead of launch'
  )
  args = parser.parse_args(own)
  try:
    args.seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
  except ValueError:
    parser.error(f'--seeds={args.seeds!r} must be comma-separated integers, e.g. 0,1,2')
  if not args.seeds or min(args.seeds) < 0 or len(set(args.seeds)) < len(args.seeds):
    parser.error('--seeds must list distinct non-negative integers')
  bad = [a for a in extra if not a.startswith('--config.') or a.startswith('--config.seed=')]
  if bad:
    parser.error(f'after --, only --config.* overrides other than --config.seed; got {bad}')
  return args, extra


def from_repo(path: str) -> str:
  """path (relative to this process's folder) as the repository root's runs must see it."""
  absolute = os.path.abspath(path)
  relative = os.path.relpath(absolute, REPO)
  return absolute if relative == '..' or relative.startswith('..' + os.sep) else relative


def command(args: argparse.Namespace, seed: int, extra: list[str]) -> list[str]:
  """The command line that trains one seed, to run in the repository root (REPO)."""
  module = 'tools.parity' if args.parity else 'launch'
  # A config file may carry an argument: configs/paper_cifar.py:plain56.
  config, colon, argument = args.config.partition(':')
  workdir = os.path.join(args.workdir_root, f'seed{seed}')
  return [
    sys.executable,
    '-m',
    module,
    f'--config={from_repo(config)}{colon}{argument}',
    f'--config.seed={seed}',
    f'--workdir={from_repo(workdir)}',
    *extra,
  ]


def main(argv: list[str] | None = None) -> int:
  """Runs every seed; returns 0, or the exit status of the first run that failed."""
  args, extra = parse_args(sys.argv[1:] if argv is None else argv)
  for seed in args.seeds:
    workdir = pathlib.Path(args.workdir_root, f'seed{seed}')
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = command(args, seed, extra)
    log_path = workdir / 'sweep.log'
    print(f'seed {seed}: {" ".join(cmd)}\n  log: {log_path}', flush=True)
    start = time.monotonic()
    with open(log_path, 'a') as log:
      log.write(f'=== {time.strftime("%Y-%m-%dT%H:%M:%S%z")} {" ".join(cmd)}\n')
      log.flush()
      status = subprocess.run(
        cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False
      ).returncode
    print(f'seed {seed}: exit status {status} after {time.monotonic() - start:.0f} s', flush=True)
    if status:
      print(
        f'Stopped: seed {seed} failed; see {log_path}. Seeds not started: '
        f'{args.seeds[args.seeds.index(seed) + 1 :]}.',
        file=sys.stderr,
      )
      return status
  return 0


if __name__ == '__main__':
  sys.exit(main())
