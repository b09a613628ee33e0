"""A deep pre-activation net's train step in its three forms: compile time, step time, memory.

  python -m benchmarks.deep_compile --depth=1001 --batch=32
  python -m benchmarks.deep_compile --depth=164 --batch=128 --forms=unrolled,scan

The net is preact_resnet164/1001's code at --depth (9n + 2). Forms: `unrolled` (every block its
own module: XLA compiles each), `scan` (model.scan_blocks: each stage's blocks after the first
as one nn.scan, compiled once), `scan+remat` (model.remat too: activations recomputed in the
backward pass). For each: the seconds to lower and compile the jitted step (the pure step,
benchmarks/jax_rows.make_pure_step: forward, backward, SGD), the median seconds of --steps steps
after one warm-up step, and XLA's memory analysis of the compiled program (argument and temp
bytes: the weights and optimiser state, and the activations kept for the backward pass), known
before anything runs: with --analysis_only nothing is run, for a form that would not fit.
Initialisation is not timed (eval_shape, then zeros: the values do not change the cost).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.jax_rows import make_pure_step
from resnet_jax import optim, preact, train_step

FORMS = {
  'unrolled': {},
  'scan': {'scan_blocks': True},
  'scan+remat': {'scan_blocks': True, 'remat': True},
}


def _model(depth: int, options: dict):
  if (depth - 2) % 9:
    raise SystemExit(f'--depth={depth}: the pre-activation bottleneck nets have 9n + 2 layers.')
  units = (depth - 2) // 9
  net = functools.partial(preact.REGISTRY['preact_resnet164'], stage_sizes=(units,) * 3)
  return net(num_classes=10, **options)


def _zero_state(model, tx):
  def init():
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    return train_step.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(variables['params']),
      diverged_at=jnp.zeros((), jnp.int32),
    )

  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(init))


def measure(depth: int, batch: int, form: str, steps: int, analysis_only: bool) -> dict:
  model = _model(depth, FORMS[form])
  tx = optim.create_optimizer(
    lambda _: 0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, decay_bn_and_bias=True
  )
  state = _zero_state(model, tx)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
  step = make_pure_step(model, tx)
  start = time.perf_counter()
  compiled = step.lower(state, images, labels).compile()
  row = {'form': form, 'compile_s': time.perf_counter() - start}
  stats = compiled.memory_analysis()
  row['argument_mb'] = stats.argument_size_in_bytes / 2**20 if stats else float('nan')
  row['temp_mb'] = stats.temp_size_in_bytes / 2**20 if stats else float('nan')
  row['step_s'] = float('nan')
  if not analysis_only:
    times = []
    for _ in range(steps + 1):
      start = time.perf_counter()
      state, loss = compiled(state, images, labels)
      jax.block_until_ready(loss)
      times.append(time.perf_counter() - start)
    row['step_s'] = statistics.median(times[1:])
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--depth', type=int, default=1001, help='9n + 2: 164, 1001, ...')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=3, help='timed steps, after one warm-up')
  parser.add_argument('--forms', default=','.join(FORMS), help=f'of {", ".join(FORMS)}')
  parser.add_argument('--analysis_only', action='store_true', help='compile, run nothing')
  args = parser.parse_args()
  forms = args.forms.split(',')
  unknown = [f for f in forms if f not in FORMS]
  if unknown:
    parser.error(f'unknown --forms {",".join(unknown)}; valid: {", ".join(FORMS)}')
  print(f'pre-activation ResNet-{args.depth}, batch {args.batch}, {jax.devices()[0].device_kind}')
  print(f'{"form":<12}{"compile s":>11}{"step s":>9}{"args MiB":>10}{"temp MiB":>10}')
  for form in forms:
    row = measure(args.depth, args.batch, form, args.steps, args.analysis_only)
    print(
      f'{row["form"]:<12}{row["compile_s"]:>11.1f}{row["step_s"]:>9.3f}'
      f'{row["argument_mb"]:>10.1f}{row["temp_mb"]:>10.1f}',
      flush=True,
    )


if __name__ == '__main__':
  main()
