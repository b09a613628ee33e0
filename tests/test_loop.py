"""The training loop between its log rows: live progress lines, on a clock the test controls."""

import re

from configs import resnet_test
from resnet_jax import console, records, train


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


def test_live_lines_wait_for_their_interval_and_count_from_the_last_log_row():
  clock = _Clock()
  progress = console.Progress(100, 8, 10, 0, live_every_s=5.0, clock=clock)
  clock.now = 4.0
  assert progress.live_line(4) is None  # too soon
  clock.now = 5.0
  # 4 steps of 8 images in 5 s; 96 steps left at that rate take 120 s.
  assert progress.live_line(4) == 'epoch    0.40  step       4/100       6.4 img/s  ETA 0:02:00'
  clock.now = 9.0
  assert progress.live_line(6) is None  # 4 s since the last line
  assert progress.images_per_second(6) == 6 * 8 / 9.0  # a log row: a line, and a new window
  clock.now = 13.0
  assert progress.live_line(8) is None  # 4 s since the log row's line
  clock.now = 14.0
  assert progress.live_line(8) == 'epoch    0.80  step       8/100       3.2 img/s  ETA 0:03:50'
  progress.restart(8)  # after an eval, say: its time is not training
  clock.now = 30.0
  assert progress.live_line(8) is None  # no step finished since


def test_a_run_with_rare_log_rows_still_shows_its_progress(
  cifar_dir, tmp_path, caplog, monkeypatch
):
  # Interval 0: a line after every chunk that finds a newer finished step; the throttle itself is
  # the test above. The loop waits for the chunk before the latest, so the lines trail by one.
  monkeypatch.setattr(console, 'LIVE_EVERY_S', 0.0)
  config = resnet_test.get_config()
  config.dataset.data_dir = str(cifar_dir)
  config.update(
    num_train_steps=12, log_every_steps=1000, eval_every_steps=12, checkpoint_every_steps=12
  )
  with caplog.at_level('INFO'):
    train.train_and_evaluate(config, str(tmp_path))
  live = re.findall(r'step +(\d+)/12 +[\d.]+ img/s  ETA \d+:\d\d:\d\d$', caplog.text, re.M)
  assert live == ['4', '6', '8', '10'], caplog.text
  assert [row['step'] for row in records.read_metrics(str(tmp_path), 'train')] == [12]
