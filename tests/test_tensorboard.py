"""TensorBoard event files of component trainings, read back with
TensorBoard's own reader."""
from __future__ import annotations

import os

import numpy as np
import pytest

from benchmark import tensorboard_events
from tests.harness import smoke_context

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
  acc = event_accumulator.EventAccumulator(str(folder))
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()["scalars"]}


def test_every_component_training_writes_its_epochs(tmp_path):
  # eval_every 2 of 3 epochs: validation after the 2nd and the last.
  ctx = smoke_context(tmp_path, epochs=3, eval_every=2)
  ft = ctx.component(ctx.spec("ft", 0))
  folders = sorted(p for p in (tmp_path / "tensorboard").glob("*/*") if p.is_dir())
  kinds = {p.parent.name for p in folders}
  assert "ft" in kinds and len(kinds) == len(folders) >= 2  # ft and what it starts from
  for folder in folders:
    assert (tmp_path / "runs" / "components" / folder.parent.name
            / f"{folder.name}.json").exists()

  rec = ft.record
  assert [r["kind"] for r in ctx.runner.records()] == ["pretrain", "ft"]
  assert ctx.runner.records()[-1] is rec
  assert rec["val_epochs"] == [1, 2] and len(rec["val_curve"]) == 2
  got = _scalars(tensorboard_events.folder(tmp_path, "ft", rec["key"]))
  metric = rec["metric"]
  assert set(got) == {"train/loss", f"val/{metric}", "train/learning_rate",
                      "train/examples_per_s"}
  assert [s for s, _ in got["train/loss"]] == [1, 2, 3]  # step = epochs done
  np.testing.assert_allclose([v for _, v in got["train/loss"]], rec["loss_curve"], rtol=1e-6)
  assert [s for s, _ in got[f"val/{metric}"]] == [e + 1 for e in rec["val_epochs"]]
  np.testing.assert_allclose([v for _, v in got[f"val/{metric}"]], rec["val_curve"],
                             rtol=1e-6)
  np.testing.assert_allclose([v for _, v in got["train/learning_rate"]],
                             [rec["config"]["lr"]] * 3, rtol=1e-6)
  assert all(v > 0 for _, v in got["train/examples_per_s"])


def test_a_resumed_log_shows_one_curve(tmp_path):
  # A killed run logged epochs 1-4 but its checkpoint holds 2: the resumed
  # run logs 3-5 again; TensorBoard shows the resumed values, once each.
  writer = tensorboard_events._summary_writer()
  first = tensorboard_events.EpochLog(tmp_path, "acc", writer)
  for epoch in range(4):
    first(epoch, {"loss": 10.0 + epoch, "val": 50.0})
  first.close()
  again = tensorboard_events.EpochLog(tmp_path, "acc", writer)
  for epoch in range(2, 5):
    again(epoch, {"loss": 20.0 + epoch})
  again.close()
  got = _scalars(tmp_path)
  assert got["train/loss"] == [(1, 10.0), (2, 11.0), (3, 22.0), (4, 23.0), (5, 24.0)]
  assert got["val/acc"] == [(1, 50.0), (2, 50.0)]
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2


def test_event_files_honour_the_umask(tmp_path):
  old = os.umask(0o077)
  try:
    log = tensorboard_events.EpochLog(tmp_path / "k", "rmse",
                                      tensorboard_events._summary_writer())
    log(0, {"loss": 1.0})
    log.close()
  finally:
    os.umask(old)
  (f,) = (tmp_path / "k").iterdir()
  assert f.stat().st_mode & 0o077 == 0


def test_no_writer_no_log_and_one_warning(monkeypatch, capsys):
  import builtins
  real_import = builtins.__import__

  def no_tensorboardx(name, *a, **k):
    if name.startswith("tensorboardX"):
      raise ImportError(name)
    return real_import(name, *a, **k)
  monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
  monkeypatch.setattr(tensorboard_events, "_warned_missing", False)
  assert tensorboard_events.epoch_logger("unused", "rmse") is None
  assert tensorboard_events.epoch_logger("unused", "rmse") is None
  assert capsys.readouterr().err.count("tensorboardX is not installed") == 1


def test_a_failing_write_turns_the_log_off(tmp_path, capsys):
  class Full:
    def __init__(self, *a, **k):
      raise OSError(28, "No space left on device")
  log = tensorboard_events.EpochLog(tmp_path, "rmse", Full)
  log(0, {"loss": 1.0})
  log(1, {"loss": 1.0})
  assert capsys.readouterr().err.count("turned off") == 1
