"""TensorBoard event files of component trainings, one folder per component.

``epoch_logger(folder, metric)`` returns the ``on_epoch`` callback of a
``trainer.TrainJob``: after each epoch it writes the scalars ``train/loss``,
``val/<metric>`` (e.g. ``val/rmse``, on epochs that validate),
``train/learning_rate`` and ``train/examples_per_s``, the step being the
number of epochs done (1 .. epochs). The runner puts them under
``WORKDIR/tensorboard/<kind>/<key>/``; ``tensorboard --logdir
WORKDIR/tensorboard`` shows every component.

The writer is ``tensorboardX`` (no TensorFlow in the training process). Where
it is not installed, or only processes other than the first run, there is no
log (one warning line for the former); a write that fails (disk full, any
error of the writer) turns the log off with a warning: a training never
fails for its log. A resumed
training opens its writer with ``purge_step`` at its first new epoch, so
TensorBoard hides what a killed run wrote past the checkpoint resumed from
and shows one curve. Files are created with mode 0666 less the umask.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Mapping

_warned_missing = False


def _summary_writer():
  """tensorboardX's ``SummaryWriter``, or None (warned once) when missing."""
  global _warned_missing
  try:
    from tensorboardX import SummaryWriter
  except ImportError:
    if not _warned_missing:
      print("warning: tensorboardX is not installed: no TensorBoard event files "
            "(pip install tensorboardX)", file=sys.stderr)
      _warned_missing = True
    return None
  return SummaryWriter


class EpochLog:
  """Writes one training's per-epoch scalars to event files in ``folder``;
  the writer opens at the first epoch logged (its ``purge_step``)."""

  def __init__(self, folder: Path, metric: str, writer_cls):
    self.folder, self.metric, self._writer_cls = Path(folder), metric, writer_cls
    self._writer = None
    self._off = False

  def __call__(self, epoch: int, scalars: Mapping[str, float]) -> None:
    if self._off:
      return
    step = epoch + 1
    tags = {"loss": "train/loss", "val": f"val/{self.metric}", "lr": "train/learning_rate",
            "examples_per_s": "train/examples_per_s"}
    try:
      if self._writer is None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # tensorboardX names a file by the second and host; the suffix keeps a
        # resume within that second from reusing (truncating) the name, and
        # sorts after it, as TensorBoard reads files in name order.
        self._writer = self._writer_cls(
            str(self.folder), purge_step=step, flush_secs=30,
            filename_suffix=f".{time.time_ns()}.{os.getpid()}")
      for name, value in scalars.items():
        self._writer.add_scalar(tags.get(name, f"train/{name}"), float(value), step)
      # Epochs are seconds to minutes apart: a live TensorBoard sees each one.
      self._writer.flush()
    except Exception as e:  # noqa: BLE001  (disk full, a writer bug: the log, not the training)
      self._off = True
      print(f"warning: TensorBoard log {self.folder} turned off: {e}", file=sys.stderr)

  def close(self) -> None:
    if self._writer is not None:
      try:
        self._writer.close()
      except OSError as e:
        print(f"warning: TensorBoard log {self.folder} not closed cleanly: {e}",
              file=sys.stderr)
      self._writer = None


def epoch_logger(folder: Path, metric: str) -> EpochLog | None:
  """The per-epoch log for one training in ``folder``, or None where this is
  not the first process or tensorboardX is missing."""
  from benchmark.mesh import is_main_process
  if not is_main_process():
    return None
  writer_cls = _summary_writer()
  return None if writer_cls is None else EpochLog(folder, metric, writer_cls)


def folder(workdir: Path, kind: str, key: str) -> Path:
  """Where a component's event files go: ``WORKDIR/tensorboard/<kind>/<key>/``."""
  return Path(workdir) / "tensorboard" / kind / key

