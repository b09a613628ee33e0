"""The speed check of a GPU window: benchmark rows that fit a time budget, rotated across windows.

  python -m benchmarks.window --budget_s 200 --out_dir results/DIR [--results results]

A row is one run of benchmarks/throughput.py (its arguments, extra environment such as
XLA_FLAGS, and an estimate of its seconds, compilation included). The rows are taken in this
order: those never measured on this device kind (jax.devices()[0].device_kind, asked of a short
child process so that this one never holds the GPU), in list order; then the others, least
recently measured first. What was measured and when is read from every speed.jsonl under
--results (throughput.py --jsonl lines, matched by row_id and device_kind). A row whose run
wrote no line, having crashed before its first row, counts as never measured.

Each row runs as `python -m benchmarks.throughput ARGS --row_id ID --jsonl DIR/speed.jsonl
--out DIR/ID.md` (its output in DIR/ID.log), stopped at the end of the budget (SIGTERM to its
process group, SIGKILL KILL_GRACE_S later); throughput.py writes each row as it finishes, so a
stopped run leaves the rows it measured. A row whose estimate exceeds the time left is skipped
for a later window, and the next row tried. The window prints a summary and writes it to
DIR/summary.txt. Needs only the standard library here; the rows need what throughput.py needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
KILL_GRACE_S = 10  # after SIGTERM, before SIGKILL: a stopped run may overrun the budget this much
PROBE_TIMEOUT_S = 120
LOG_TAIL_LINES = 15  # of a failed row's output, printed, since a window's output may be all
# that comes back from the GPU machine

# Short runs: one round, 20 timed calls after 5 warm-up calls.
_SHORT = '--steps 20 --warmup 5 --rounds 1'
_R18 = f'--models resnet18 --batch_size 512 {_SHORT}'
_R18_BF16_JAX = f'--models resnet18 --dtypes bfloat16 {_SHORT} --no_torch'  # + --batch_size
_R20_F32_JAX = f'--models resnet20 --dtypes float32 --batch_size 128 {_SHORT} --no_torch'
_TORCH_MODES = '--torch_modes eager,default,reduce-overhead'


@dataclasses.dataclass(frozen=True)
class WindowRow:
  """One benchmarks/throughput.py run: row_id names it in speed.jsonl."""

  row_id: str
  args: str  # throughput.py's arguments, space-separated
  estimate_s: float  # the whole run, start-up and compilation included
  # Added to the inherited environment; XLA_FLAGS are appended to the inherited ones.
  env: dict[str, str] = dataclasses.field(default_factory=dict)


# Most important first. Estimates: start-up (imports, device, dataset) about 15 s, plus the first
# calls measured on an H100 on 2026-11-27 (benchmarks/RESULTS.md: ResNet-18 data path 24 s
# bfloat16 and 13 s float32, PyTorch torch.compile 15-23 s) or guessed where no such measurement
# exists (reduce-overhead, max-autotune, K=8 unrolled, replicas, ResNet-20 and ResNet-56).
ROWS = [
  WindowRow('r18-bf16-b512', f'{_R18} --dtypes bfloat16 {_TORCH_MODES}', estimate_s=120),
  WindowRow('r18-f32-b512', f'{_R18} --dtypes float32 {_TORCH_MODES}', estimate_s=100),
  WindowRow('r18-bf16-b1024', f'{_R18_BF16_JAX} --batch_size 1024', estimate_s=50),
  WindowRow('r18-bf16-b2048', f'{_R18_BF16_JAX} --batch_size 2048', estimate_s=60),
  # Compile time of an unrolled call grows with K.
  WindowRow(
    'r18-bf16-b512-k8', f'{_R18_BF16_JAX} --batch_size 512 --steps_per_call 8', estimate_s=120
  ),
  WindowRow(
    'r18-bf16-b512-k8-scan',
    f'{_R18_BF16_JAX} --batch_size 512 --steps_per_call 8 --scan',
    estimate_s=50,
  ),
  WindowRow(
    'r18-bf16-b512-cmdbuf-off',
    f'{_R18_BF16_JAX} --batch_size 512',
    estimate_s=50,
    env={'XLA_FLAGS': '--xla_gpu_enable_command_buffer='},
  ),
  # XLA's default records FUSION, CUBLAS, CUBLASLT, CUSTOM_CALL and CUDNN commands in graphs of
  # at least 5; this adds loops and conditionals and records graphs of any size.
  WindowRow(
    'r18-bf16-b512-cmdbuf-all',
    f'{_R18_BF16_JAX} --batch_size 512',
    estimate_s=50,
    env={
      'XLA_FLAGS': '--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,'
      'CONDITIONAL,WHILE --xla_gpu_graph_min_graph_size=1'
    },
  ),
  WindowRow(
    'r18-bf16-b512-autotune4',
    f'{_R18_BF16_JAX} --batch_size 512',
    estimate_s=70,
    env={'XLA_FLAGS': '--xla_gpu_autotune_level=4'},
  ),
  # The replica ratios the training queue uses; the one-replica row is also ResNet-20's K=1.
  WindowRow('r20-f32-b128-replicas', f'{_R20_F32_JAX} --replicas 1,2,4,8', estimate_s=80),
  WindowRow(
    'r56-f32-b128-replicas',
    f'--models resnet56 --dtypes float32 --batch_size 128 {_SHORT} --no_torch --replicas 1,2,4,8',
    estimate_s=120,
  ),
  WindowRow('r20-f32-b128-k8', f'{_R20_F32_JAX} --steps_per_call 8', estimate_s=70),
  WindowRow('r20-f32-b128-k8-scan', f'{_R20_F32_JAX} --steps_per_call 8 --scan', estimate_s=40),
  # max-autotune searches kernel configurations for every convolution: minutes.
  WindowRow(
    'r18-bf16-b512-torch-max-autotune',
    f'{_R18} --dtypes bfloat16 --torch_modes max-autotune',
    estimate_s=300,
  ),
]

# A dry run on the CPU (tests/test_benchmarks.py): the tiny net, a few steps, seconds each.
_CPU_TEST = '--models resnet_test --batch_size 8 --num_images 64 --steps 2 --warmup 1 --rounds 1'
CPU_TEST_ROWS = [
  WindowRow('cpu-test', f'{_CPU_TEST} --no_torch', estimate_s=30),
  WindowRow('cpu-test-k2-scan', f'{_CPU_TEST} --steps_per_call 2 --scan --no_torch', estimate_s=30),
]
ROW_LISTS = {'gpu': ROWS, 'cpu_test': CPU_TEST_ROWS}


class WindowStopped(Exception):
  """The window itself got SIGTERM (its caller's time limit)."""


def _raise_stopped(signum: int, frame: object) -> None:
  raise WindowStopped(signal.Signals(signum).name)


def device_kind(env: dict[str, str]) -> str | None:
  """jax.devices()[0].device_kind, from a child process that lets go of the device on exit;
  None if it fails (then every row counts as never measured)."""
  probe = subprocess.run(
    [sys.executable, '-c', 'import jax; print(jax.devices()[0].device_kind)'],
    cwd=REPO,
    env={**env, 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'},
    capture_output=True,
    text=True,
    timeout=PROBE_TIMEOUT_S,
    check=False,
  )
  lines = probe.stdout.strip().splitlines()
  if probe.returncode or not lines:
    print(f'window: no device kind (exit {probe.returncode}): {probe.stderr[-2000:]}', flush=True)
    return None
  return lines[-1].strip()


def speed_rows(results: pathlib.Path) -> list[dict]:
  """Every line of every speed.jsonl under results (tools/reproduce.py reads them too)."""
  records = []
  for path in sorted(results.glob('**/speed.jsonl')):
    for line in path.read_text().splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # a line cut short by a stopped run
  return records


def last_measured(results: pathlib.Path, kind: str | None) -> dict[str, str]:
  """row_id -> the latest date of its lines on this device kind, in every speed.jsonl under
  results (dates are throughput.py's UTC ISO strings, which sort as text)."""
  last: dict[str, str] = {}
  for record in speed_rows(results):
    row_id, date = record.get('row_id'), record.get('date') or ''
    if row_id and record.get('device_kind') == kind and date > last.get(row_id, ''):
      last[row_id] = date
  return last


def rotation(rows: list[WindowRow], last: dict[str, str]) -> list[WindowRow]:
  """Never measured first, in list order (sorted is stable); then least recently measured."""
  return sorted(rows, key=lambda row: (row.row_id in last, last.get(row.row_id, '')))


def _stop(child: subprocess.Popen) -> None:
  """SIGTERM to the row's process group (torch.compile's workers too), then SIGKILL."""
  try:
    os.killpg(child.pid, signal.SIGTERM)
  except ProcessLookupError:  # the group is gone already
    return
  try:
    child.wait(KILL_GRACE_S)
  except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _line_count(path: pathlib.Path) -> int:
  return len(path.read_text().splitlines()) if path.exists() else 0


def run_row(row: WindowRow, timeout_s: float, out_dir: pathlib.Path, env: dict[str, str]) -> str:
  """Runs row's throughput.py until it ends or timeout_s passes; returns its summary line."""
  jsonl = out_dir / 'speed.jsonl'
  command = [sys.executable, '-m', 'benchmarks.throughput', *row.args.split()]
  command += [
    '--row_id',
    row.row_id,
    '--jsonl',
    str(jsonl),
    '--out',
    str(out_dir / f'{row.row_id}.md'),
  ]
  row_env = {**env, 'PYTHONUNBUFFERED': '1'}
  for name, value in row.env.items():
    row_env[name] = f'{env.get(name, "")} {value}'.strip() if name == 'XLA_FLAGS' else value
  log_path = out_dir / f'{row.row_id}.log'
  lines_before, start = _line_count(jsonl), time.monotonic()
  timed_out = False
  with open(log_path, 'w') as log:
    # A session of its own: the row's process group can be stopped whole.
    child = subprocess.Popen(
      command, cwd=REPO, env=row_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
      child.wait(timeout=max(timeout_s, 0))
    except subprocess.TimeoutExpired:
      timed_out = True
    finally:
      if child.poll() is None:  # the budget is spent, or this window was stopped
        _stop(child)
  seconds, written = time.monotonic() - start, _line_count(jsonl) - lines_before
  if timed_out:
    status = 'stopped at the budget'
  elif child.returncode:
    status = f'failed (exit {child.returncode}, {log_path.name})'
    tail = log_path.read_text().splitlines()[-LOG_TAIL_LINES:]
    print('\n'.join(f'  {line}' for line in tail), flush=True)
  else:
    status = 'ok'
  return (
    f'run: {row.row_id}  {status} in {seconds:.0f} s (estimate {row.estimate_s:.0f} s), '
    f'{written} rows in speed.jsonl'
  )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--budget_s', type=float, required=True, help='seconds for the whole window')
  parser.add_argument('--out_dir', required=True, help='speed.jsonl, ID.md, ID.log, summary.txt')
  parser.add_argument(
    '--results', default='results', help='where earlier windows left their speed.jsonl files'
  )
  parser.add_argument(
    '--rows', default='gpu', choices=sorted(ROW_LISTS), help='the row list (cpu_test: a dry run)'
  )
  args = parser.parse_args(argv)
  if args.budget_s <= 0:
    parser.error('--budget_s must be positive')
  return args


def main(argv: list[str] | None = None) -> None:
  start = time.monotonic()
  args = parse_args(argv)
  out_dir = pathlib.Path(args.out_dir).resolve()
  out_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ)
  signal.signal(signal.SIGTERM, _raise_stopped)
  kind, pending, lines, stopped = None, list(ROW_LISTS[args.rows]), [], None
  try:
    kind = device_kind(env)
    pending = rotation(pending, last_measured(pathlib.Path(args.results), kind))
    print(f'window: {kind}; order: {", ".join(row.row_id for row in pending)}', flush=True)
    while pending:
      row, left = pending[0], args.budget_s - (time.monotonic() - start)
      if row.estimate_s > left:
        lines.append(
          f'left: {row.row_id}  estimate {row.estimate_s:.0f} s, {max(left, 0):.0f} s left'
        )
      else:
        print(
          f'window: {row.row_id} (estimate {row.estimate_s:.0f} s, {left:.0f} s left)', flush=True
        )
        lines.append(run_row(row, left, out_dir, env))
        print(lines[-1], flush=True)
      pending.pop(0)
  except (WindowStopped, KeyboardInterrupt) as e:
    # The row running then (pending[0]) keeps the rows it wrote; it is listed as left too.
    stopped = f'window stopped ({type(e).__name__} {e})'
    lines += [f'left: {row.row_id}  {stopped}' for row in pending]
  spent = time.monotonic() - start
  now = datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')
  ran = [line for line in lines if line.startswith('run: ')]
  summary = [
    f'window {now}: device_kind {kind}; budget {args.budget_s:.0f} s, spent {spent:.0f} s; '
    f'rows {args.rows}, history from {args.results}/**/speed.jsonl; {len(ran)} rows run, '
    f'{len(lines) - len(ran)} left for later windows',
    *ran,
    *(line for line in lines if not line.startswith('run: ')),
  ]
  (out_dir / 'summary.txt').write_text('\n'.join(summary) + '\n')
  print('\n'.join(summary), flush=True)
  if stopped:
    sys.exit(1)


if __name__ == '__main__':
  main()
