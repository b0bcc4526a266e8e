"""A full disk or an unwritable store: a one-line UserError naming the fix,
no temporary file left, earlier records intact; damaged artefacts are set
aside and recomputed."""
from __future__ import annotations

import errno
import os

import pytest

from benchmark import store as S
from benchmark.errors import UserError
from tests.harness import smoke_context


def test_full_disk_is_a_user_error_and_leaves_nothing(tmp_path, monkeypatch):
  st = S.RunStore(tmp_path)
  first = tmp_path / "runs" / "a.json"
  st.write(first, {"x": 1})
  real_fsync = os.fsync

  def full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full)
  with pytest.raises(UserError, match=r"cannot write .*b\.json: No space left on device; "
                                      r"free disk space or pass a writable --workdir"):
    st.write(tmp_path / "runs" / "b.json", {"x": 2})
  monkeypatch.setattr(os, "fsync", real_fsync)
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a.json"]
  assert st.read(first)["x"] == 1


@pytest.mark.parametrize("suffix", [".npz", ".preds.npz"])
def test_cut_artefact_is_set_aside_and_recomputed(tmp_path, suffix, capsys):
  ctx = smoke_context(tmp_path)
  res = ctx.component(ctx.spec("lp", 0))
  art = res._path(suffix)
  art.write_bytes(art.read_bytes()[:100])
  again = smoke_context(tmp_path)
  res2 = again.component(again.spec("lp", 0))
  assert res.spec.key in again.trained
  assert res2.record["scores"] == res.record["scores"]  # deterministic retraining
  err = capsys.readouterr().err
  assert f"{res.spec.key}{suffix}" in err and "moved aside" in err
  assert len(list(art.parent.glob(f"{res.spec.key}*.corrupt-*"))) == 3


def test_killed_writes_leave_temporaries_that_a_later_run_sweeps(tmp_path):
  st = S.RunStore(tmp_path)
  d = tmp_path / "runs" / "components" / "ft"
  d.mkdir(parents=True)
  old, young = d / ".k.json.abc.tmp", d / ".k.npz.def.tmp"
  old.write_text("{")
  young.write_text("{")
  os.utime(old, (0, 0))
  st.check_writable()
  assert not old.exists() and young.exists()  # a live writer's file is left alone
