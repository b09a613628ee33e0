"""Seconds a run's start spends loading a prepared tfds dataset: decoding its records (the first
start, which also writes the cache beside them) and reading the cache (every later start).

  python -m benchmarks.data_start --data_dir DIR [--name cifar10] [--rounds 3]

DIR is a dataset.data_dir where the dataset is prepared (a run with dataset.source='tfds', or
`python -m resnet_jax.tfds_source cifar10 DIR`, prepares it). Each round deletes the cache, loads
the train and test splits (the first start), then loads them again (a cached start); only
tfds_source.load is timed, not the imports. The cache is left in place at the end.
"""

import argparse
import shutil
import statistics
import time

from resnet_jax import tfds_source


def time_starts(name: str, data_dir: str, rounds: int) -> list[tuple[float, float]]:
  """(first start, cached start) seconds of each round."""
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  cache = f'{builder.data_dir}/{tfds_source.CACHE_FOLDER}'
  times = []
  for _ in range(rounds):
    shutil.rmtree(cache, ignore_errors=True)
    seconds = []
    for _ in ('first', 'cached'):
      start = time.perf_counter()
      tfds_source.load(name, data_dir)
      seconds.append(time.perf_counter() - start)
    times.append((seconds[0], seconds[1]))
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', required=True, help='where the dataset is prepared')
  parser.add_argument('--name', default='cifar10', help='cifar10 or cifar100')
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  import tensorflow_datasets as tfds

  if not tfds.builder(args.name, data_dir=args.data_dir, file_format='array_record').is_prepared():
    parser.error(
      f'{args.name} is not prepared as ArrayRecord in {args.data_dir}: prepare it first '
      f'(python -m resnet_jax.tfds_source {args.name} {args.data_dir}).'
    )
  times = time_starts(args.name, args.data_dir, args.rounds)
  for i, (first, cached) in enumerate(times):
    print(f'round {i + 1}: first start {first:.2f} s, cached start {cached:.2f} s')
  print(
    f'{args.name} in {args.data_dir}, median of {len(times)}: first start '
    f'{statistics.median(t[0] for t in times):.2f} s, cached start '
    f'{statistics.median(t[1] for t in times):.2f} s'
  )


if __name__ == '__main__':
  main()
