"""Evaluation on the device: a split padded to whole batches, and the jitted batch it sums over.

The test and validation splits sit on every device like the training set; each batch is drawn by
index inside jit, and padding examples are masked out, so every real example counts once. Every
replica of a run evaluates the same batch in the same call; the results are summarised over the
replicas that have not diverged.
"""

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from resnet_jax import augment, cifar, optim, parallel


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """A split padded to whole eval batches and placed on every device; `count` are real."""

  images: jax.Array
  labels: jax.Array
  count: int


def eval_set(split: cifar.Split, batch_size: int, mesh: Mesh) -> EvalSet:
  """Pads the split to whole batches (padding is masked out) and places it on every device."""
  count = len(split.labels)
  pad = -count % batch_size
  images = np.concatenate([split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
  labels = np.concatenate([split.labels, np.zeros((pad,), np.int32)])
  images, labels = parallel.replicate((images, labels), mesh)
  return EvalSet(images=images, labels=labels, count=count)


def make_eval_fn(
  model: nn.Module,
  mesh: Mesh,
  batch_size: int,
  mean: tuple[float, ...],
  std: tuple[float, ...],
  seeds: Sequence[int],
  flip_tta: bool = False,
):
  """Returns evaluate(state, EvalSet) -> summarize() of each replica's loss, top-1 and top-5.

  state: a stacked TrainState of len(seeds) replicas (seeds[k]: replica k's seed).

  One jitted call per batch (a lax.scan over batches runs ~30x slower on XLA's CPU backend);
  the sums stay on the device until the end. Each call adds its batch to the running sums it is
  given, so it cannot start before the call before it is done: independent calls in flight
  together could run their cross-process reductions in a different order on each process and
  hang (gloo on the CPU). flip_tta adds loss_flip_tta, top1_flip_tta and top5_flip_tta: the
  same of the logits averaged over each image and its horizontal flip.
  """

  def metric_sums(logits, labels, valid):
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return [
      jnp.sum(optim.cross_entropy(logits, labels, 0.0) * valid),
      jnp.sum((top5[:, 0] == labels) * valid),
      jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * valid),
    ]

  @jax.jit
  def eval_batch(sums, variables, images, labels, start, count):
    index = start + jnp.arange(batch_size)
    index = jax.lax.with_sharding_constraint(index, parallel.batch_sharded(mesh))
    valid = (index < count).astype(jnp.float32)
    batch_labels = labels[index]
    batch_images = augment.normalize(images[index], mean, std)

    def replica_sums(variables, batch_images, batch_labels, valid):
      logits = model.apply(variables, batch_images, train=False)
      out = metric_sums(logits, batch_labels, valid)
      if flip_tta:
        # Averaged in float32, so a bfloat16 model's two logits are not rounded again.
        flipped = model.apply(variables, batch_images[:, :, ::-1], train=False)  # NHWC: W flips
        mean_logits = (logits.astype(jnp.float32) + flipped.astype(jnp.float32)) / 2
        out += metric_sums(mean_logits, batch_labels, valid)
      return jnp.stack(out)

    batch_sums = parallel.over_replicas(replica_sums, mesh, in_axes=(0, None, None, None))(
      variables, batch_images, batch_labels, valid
    )
    # On every device, so that every process can read every replica's sums.
    return jax.lax.with_sharding_constraint(sums + batch_sums, parallel.replicated(mesh))

  names = ('loss', 'top1', 'top5')
  if flip_tta:
    names += ('loss_flip_tta', 'top1_flip_tta', 'top5_flip_tta')

  def evaluate(state: Any, split: EvalSet) -> dict[str, Any]:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    sums = parallel.replicate(np.zeros((len(seeds), len(names)), np.float32), mesh)
    for start in range(0, len(split.labels), batch_size):
      sums = eval_batch(sums, variables, split.images, split.labels, start, split.count)
    per_replica = [
      {name: float(x) / split.count for name, x in zip(names, row)} for row in jax.device_get(sums)
    ]
    return summarize(per_replica, seeds, jax.device_get(state.diverged_at).tolist(), split.count)

  return evaluate


def summarize(
  per_replica: list[dict[str, float]], seeds: Sequence[int], diverged_at: list[int], count: int
) -> dict[str, Any]:
  """One split's results over a run's replicas (docs/records.md has the schema).

  Each metric: its mean over the live replicas and, with several replicas, its sample standard
  deviation as `<metric>_std` (where two or more are live) and `live_replicas`. `replicas`: each
  replica's own metrics, with its `replica` index and `seed`; a diverged one has its
  `diverged_at` step instead of metrics (its state is that of the step before).
  """
  replicas = []
  for k, (seed, values, diverged) in enumerate(zip(seeds, per_replica, diverged_at, strict=True)):
    replicas.append(
      {'replica': k, 'seed': seed, **({'diverged_at': diverged} if diverged else values)}
    )
  live = [values for values, diverged in zip(per_replica, diverged_at) if not diverged]
  result: dict[str, Any] = {'count': count, 'replicas': replicas}
  if len(replicas) > 1:
    result['live_replicas'] = len(live)
  for name in live[0] if live else ():
    result[name] = statistics.fmean(v[name] for v in live)
    if len(replicas) > 1 and len(live) > 1:
      result[f'{name}_std'] = statistics.stdev(v[name] for v in live)
  return result


def mean_of(results: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
  """Several splits' summarize() results as one: each replica's metrics averaged over the splits
  (each split weighs the same), then summarised as a split of all their examples, with `splits`
  (how many were averaged)."""
  diverged_at = [entry.get('diverged_at', 0) for entry in results[0]['replicas']]
  per_replica = [
    {}
    if diverged
    else {
      name: statistics.fmean(result['replicas'][k][name] for result in results)
      for name in results[0]['replicas'][k]
      if name not in ('replica', 'seed')
    }
    for k, diverged in enumerate(diverged_at)
  ]
  count = sum(result['count'] for result in results)
  return {'splits': len(results), **summarize(per_replica, seeds, diverged_at, count)}
