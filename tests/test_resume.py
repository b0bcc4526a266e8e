"""Kill and resume: mid-training checkpoints restore exactly, and a killed
``run_benchmark.py`` sweep, rerun, ends with the tables of an uninterrupted one."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.checkpoint import TrainCheckpoint
from tests.harness import smoke_context

OVERRIDES = {"epochs": 4, "checkpoint_every_s": 0.0}


class Killed(BaseException):
  """Stands in for SIGKILL inside one process."""


def _ft(ctx, seed=0):
  return ctx.component(ctx.spec("ft", seed))


def test_resumed_training_is_bit_identical(tmp_path, monkeypatch):
  whole = _ft(smoke_context(tmp_path / "whole", **OVERRIDES))
  assert whole.record["timings"]["resumed_from_epoch"] == 0

  saves = []
  real_save = TrainCheckpoint.save

  def save_then_die(self, epoch, tree, meta):
    real_save(self, epoch, tree, meta)
    if self.directory.parent.name != "ft":  # its pre-training dependency
      return
    saves.append(epoch)
    if epoch == 2:
      raise Killed()

  monkeypatch.setattr(TrainCheckpoint, "save", save_then_die)
  with pytest.raises(Killed):
    _ft(smoke_context(tmp_path / "killed", **OVERRIDES))
  assert saves == [1, 2]
  ckpts = list((tmp_path / "killed" / "ckpt" / "ft").iterdir())
  assert len(ckpts) == 1 and not list((tmp_path / "killed" / "runs" / "components" / "ft").glob("*"))

  monkeypatch.setattr(TrainCheckpoint, "save", real_save)
  resumed = _ft(smoke_context(tmp_path / "killed", **OVERRIDES))
  assert resumed.record["timings"]["resumed_from_epoch"] == 2
  assert resumed.record["scores"] == whole.record["scores"]
  assert resumed.record["loss_curve"] == whole.record["loss_curve"]
  assert resumed.record["val_curve"] == whole.record["val_curve"]
  for k, v in whole.params.items():
    np.testing.assert_array_equal(resumed.params[k], v, err_msg=k)
  assert not (tmp_path / "killed" / "ckpt" / "ft" / resumed.spec.key).exists()


def test_determinism_same_seed_same_bits_other_seed_differs(tmp_path):
  a = _ft(smoke_context(tmp_path / "a", epochs=2))
  b = _ft(smoke_context(tmp_path / "b", epochs=2))
  c = _ft(smoke_context(tmp_path / "c", epochs=2), seed=1)
  assert a.record["scores"] == b.record["scores"]
  assert a.record["scores"] != c.record["scores"]


def test_damaged_checkpoint_starts_over(tmp_path, capsys):
  ctx = smoke_context(tmp_path, **OVERRIDES)
  spec = ctx.spec("ft", 0)
  d = tmp_path / "ckpt" / "ft" / spec.key / "3"
  d.mkdir(parents=True)
  (d / "garbage").write_text("not a checkpoint")
  res = _ft(ctx)
  assert res.record["timings"]["resumed_from_epoch"] == 0
  assert res.record["status"] == "ok"
