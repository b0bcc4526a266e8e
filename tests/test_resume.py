"""Kill and resume: mid-training checkpoints restore exactly, and a killed
``run_benchmark.py`` sweep, rerun, ends with the tables of an uninterrupted one."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmark.checkpoint import TrainCheckpoint
from tests.harness import smoke_context

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]

OVERRIDES = {"epochs": 4, "checkpoint_every_s": 0.0}


class Killed(BaseException):
  """Stands in for SIGKILL inside one process."""


def _ft(ctx, seed=0):
  """FT as a method uses it: trained (or read) and evaluated on every split."""
  res = ctx.component(ctx.spec("ft", seed))
  res.preds  # noqa: B018  (a deferred evaluation completes the record's scores)
  return res


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


# -- a real process, killed with SIGKILL ------------------------------------------
# One method of each way of using components (a pre-training dependency, a
# frozen large model, weight interpolation and soups over FT runs, auxiliary
# tasks, two views): 12 components and 8 method records, half the training of
# ``--method all``.
SWEEP = ["--method", "ft,lp,lp_ft,ft_zeroshot,levi,a3,soup_greedy,ratatouille",
         "--dataset", "synthetic_spurious", "--seeds", "0",
         "--preset", "smoke", "--config.epochs=3", "--config.checkpoint_every_s=0"]


def _records(workdir):
  return sorted((workdir / "runs").rglob("*.json")) if (workdir / "runs").exists() else []


def _popen(args, workdir):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.Popen([sys.executable, "run_benchmark.py", *args, "--workdir",
                           str(workdir)], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ckpts(workdir) -> set:
  """Mid-training checkpoints on disk: ``ckpt/<kind>/<key>/<epoch>`` folders."""
  return {p for p in (workdir / "ckpt").glob("*/*/*") if p.is_dir() and p.name.isdigit()} if (
      workdir / "ckpt").exists() else set()


def _kill_when(workdir, ready, timeout=300) -> bool:
  """Starts the sweep and SIGKILLs it once ``ready(workdir, before)`` holds,
  ``before`` being the records and checkpoints on disk when it started: a
  condition must look at what this process did, not at what an earlier killed
  one left (that would fire at start-up). False if it finished first."""
  before = {"records": set(_records(workdir)), "ckpts": _ckpts(workdir)}
  p = _popen(SWEEP, workdir)
  t0 = time.monotonic()
  try:
    while p.poll() is None and time.monotonic() - t0 < timeout:
      if ready(workdir, before):
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        return True
      time.sleep(0.05)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, f"the sweep failed before it could be killed: {err[-3000:]}"
  finally:
    if p.poll() is None:
      p.kill()
      p.communicate(timeout=60)
  return False


def _new_records(share, total):
  """Once this process has written ``share`` of the records still missing
  (of ``total``, what the uninterrupted sweep writes), at least one."""
  def ready(w, before):
    missing = total - len(before["records"])
    return len(set(_records(w)) - before["records"]) >= max(1, int(share * missing))
  return ready


def _mid_training(workdir, before) -> bool:
  """A checkpoint this process saved, of a component it has no record of yet
  (killed between two epochs of that training)."""
  done = {r.stem for r in _records(workdir)}
  return any(c.parent.name not in done for c in _ckpts(workdir) - before["ckpts"])


def _components(workdir):
  return sorted((workdir / "runs" / "components").rglob("*.json"))


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_identical_tables(tmp_path):
  ref = tmp_path / "ref"
  p = _popen(SWEEP, ref)
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err
  n_components, total = len(_components(ref)), len(_records(ref))

  wd = tmp_path / "killed"
  kills = [_new_records(0, total),      # after the first record
           _mid_training,               # between two epochs of a training
           _new_records(1 / 3, total),  # between components
           _new_records(1 / 2, total)]  # with methods half done
  killed, resumable = [], set()
  for ready in kills:
    killed.append(_kill_when(wd, ready))
    for rec in _records(wd):  # whatever the kill interrupted, no record is partial
      json.loads(rec.read_text())
    if ready is _mid_training:  # the trainings it cut short, checkpoint on disk
      done = {r.stem for r in _records(wd)}
      resumable = {c.parent.name for c in _ckpts(wd) if c.parent.name not in done}
  assert killed[1] and resumable, "the sweep was never killed between two epochs of a training"
  assert sum(killed) >= 3, f"the sweep finished before it could be killed: {killed}"

  p = _popen(SWEEP, wd)
  out, err = p.communicate(timeout=600)
  assert p.returncode == 0, err
  reused = int(re.search(r"(\d+) read from the store; method", out).group(1))
  assert reused > 0, out  # the rerun picked up what the killed runs finished
  # Training is deterministic, so retraining from scratch would give the same
  # bytes: what shows that the checkpoint was used is the record of each
  # training killed mid-way (finished by a later process), which must say it
  # resumed.
  recs = {r.stem: json.loads(r.read_text()) for r in _components(wd)}
  resumed = {k: recs[k]["timings"]["resumed_from_epoch"] for k in resumable if k in recs}
  assert set(resumed) == resumable and all(e > 0 for e in resumed.values()), (
      f"trainings killed mid-way did not resume from their checkpoints: {resumed}")
  for name in ("synthetic_spurious.csv", "synthetic_spurious.tex"):
    assert (wd / "tables" / name).read_bytes() == (ref / "tables" / name).read_bytes(), name
  # Every component once: none trained twice under another key, none lost.
  assert len(_components(wd)) == n_components
  assert not list((wd / "runs").rglob("*.corrupt-*"))
  assert not (wd / "ckpt").exists() or not list((wd / "ckpt").glob("*/*"))


@pytest.mark.slow
def test_two_shards_share_one_store_and_match_one_process(tmp_path):
  # With a learning-rate grid: the shards split the grid points too.
  args = ["--method", "ft,fs,levi,a1,ft_zeroshot,ratatouille", "--dataset", "synthetic_spurious",
          "--seeds", "0,1", "--preset", "smoke", "--config.protocol.lr_grid=1e-3,3e-2"]
  one = tmp_path / "one"
  p = _popen(args, one)
  _, err = p.communicate(timeout=600)
  assert p.returncode == 0, err

  two = tmp_path / "two"
  procs = [_popen([*args, "--shard", f"{i}/2"], two) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
  for name in ("synthetic_spurious.csv", "synthetic_spurious.tex"):
    assert (two / "tables" / name).read_bytes() == (one / "tables" / name).read_bytes()
  # No component trained twice: the store holds exactly the one-process set,
  # and the two shards' "trained" counts add up to it.
  comps = lambda w: sorted(p.relative_to(w) for p in (w / "runs" / "components").rglob("*.json"))
  assert comps(two) == comps(one)
  trained = [int(re.search(r"(\d+) component\(s\) trained|components: (\d+) trained", o)
                 .group(1) or re.search(r"components: (\d+) trained", o).group(1))
             for o, _ in outs]
  assert sum(trained) == len(comps(one))
  assert not list(two.rglob("*.lock"))
  hp = json.loads((two / "tables" / "synthetic_spurious.hparams.json").read_text())
  assert set(hp["synthetic_spurious"]["grids"]) == {"ft", "fs", "levi_light", "lp_ft"}  # LP: no lr_grid_lp
  rat = hp["synthetic_spurious"]["methods"]["ratatouille"]
  assert rat["lp_ft"]["chosen_by"] == "grid on ID val"
  assert rat["lp_ft_aux:s1_task"]["chosen_by"] == "lp_ft's grid on ID val"
  assert rat["lp_ft_aux:s1_task"]["lr"] == rat["lp_ft"]["lr"]
