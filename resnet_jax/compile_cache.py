"""JAX's persistent compilation cache: a resumed or repeated run skips recompiling."""

import collections
import os

import jax

_HIT = '/jax/compilation_cache/cache_hits'
_MISS = '/jax/compilation_cache/cache_misses'
_events = collections.Counter()
_listening = False


def _count(event: str, **_) -> None:
  if event in (_HIT, _MISS):
    _events[event] += 1


def enable(directory: str) -> str | None:
  """Caches compiled programs in `directory` ('' disables); returns the absolute path used."""
  if not directory:
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  jax.config.update('jax_compilation_cache_dir', directory)
  global _listening
  if not _listening:
    jax.monitoring.register_event_listener(_count)
    _listening = True
  return directory


def counts() -> tuple[int, int]:
  """(hits, misses) of the persistent cache so far in this process."""
  return _events[_HIT], _events[_MISS]
