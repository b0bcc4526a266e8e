"""Claims the README makes that no other test pinned: ``--dry_run`` lists
exactly what a real run trains and writes nothing; ``--noextra_rows``
(``--table N`` end to end, with ``tableN.hparams.json``: test_amazon_text);
``compute_dtype=bfloat16``; ``checkpoint_every_s=-1``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.harness import smoke_context

KEY = re.compile(r"^\s+(\S+)\s+seed (\d+)\s+lr: (\S+)\s+(grid|seeds)\s+.*\[([0-9a-f]+)\]$")


def _pending(stdout):
  return [m.groups() for m in map(KEY.match, stdout.splitlines()) if m]


def _files(root):
  return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("grid", ["", "1e-3,3e-2"])
def test_dry_run_lists_exactly_what_a_real_run_trains_and_writes_nothing(run_cli, tmp_path, grid):
  args = ["--method", "lp_ft,levi", "--dataset", "synthetic_spurious", "--seeds", "0,1",
          f"--config.protocol.lr_grid={grid}"]
  dry = run_cli([*args, "--dry_run"], tmp_path)
  assert dry.returncode == 0, dry.stderr[-2000:]
  assert _files(tmp_path) == [], "the dry run wrote something"
  listed = _pending(dry.stdout)
  m = re.search(r"(\d+) component training\(s\) to run", dry.stdout)
  assert m and int(m.group(1)) == len(listed) > 0, dry.stdout

  real = run_cli(args, tmp_path)
  assert real.returncode == 0, real.stderr[-2000:]
  trained = sorted(p.stem for p in (tmp_path / "runs" / "components").rglob("*.json"))
  assert re.search(rf"components: {len(trained)} trained", real.stdout), real.stdout[-1500:]
  if not grid:   # every training named, by its store key
    assert sorted(k for *_, k in listed) == trained
  else:          # the seed runs stand in for the grid's choice: the same count, and
    # every grid point by its key
    assert len(listed) == len(trained)
    assert {k for *_, why, k in listed if why == "grid"} <= set(trained)
    assert any(lr == "grid" for _, _, lr, why, _ in listed if why == "seeds")
  # After the real run (with a grid: its choice read back from the store's
  # grid records, no stand-in any more), nothing is left to train.
  again = run_cli([*args, "--dry_run"], tmp_path)
  assert again.returncode == 0 and "0 component training(s) to run" in again.stdout, (
      again.stdout[-2000:])


@pytest.mark.slow
def test_noextra_rows_drops_the_weight_averaging_rows_from_a_table(run_cli, tmp_path):
  args = ["--table", "1", "--dataset", "movielens_genre", "--backbone", "minilm_l6",
          "--seeds", "0", "--dry_run"]
  with_extras = run_cli(args, tmp_path / "a")
  without = run_cli([*args, "--noextra_rows"], tmp_path / "b")
  assert with_extras.returncode == 0 and without.returncode == 0, without.stderr[-2000:]
  a, b = _pending(with_extras.stdout), _pending(without.stdout)
  assert set(b) < set(a)
  # The soups' extra ingredients are FT at lr/3 and 3 lr: only with the extras.
  ft_lrs = lambda rows: {lr for kind, _, lr, _, _ in rows if kind == "ft"}
  assert len(ft_lrs(a)) == 3 and len(ft_lrs(b)) == 1
  assert _files(tmp_path) == []


def test_bfloat16_compute_runs_matmuls_in_bfloat16_with_float32_results():
  import jax.numpy as jnp
  from flax import nnx

  from benchmark.models.bert import BertConfig, BertEncoder, load_hf_bert, minilm_dir
  d = minilm_dir()
  cfg = BertConfig.from_json(d)
  outs = {}
  for dtype in ("float32", "bfloat16"):
    import dataclasses
    m = BertEncoder(dataclasses.replace(cfg, compute_dtype=dtype), rngs=nnx.Rngs(0))
    load_hf_bert(m, d)
    ids = np.array([[101, 7592, 2088, 102, 0, 0]], np.int32)
    view = {"ids": jnp.asarray(ids), "mask": jnp.asarray((ids > 0).astype(np.int32))}
    outs[dtype] = [np.asarray(t) for t in m(view)]
    params = nnx.state(m, nnx.Param)
    assert all(p.dtype == jnp.float32 for p in __import__("jax").tree.leaves(params))
  for a, b in zip(outs["float32"], outs["bfloat16"]):
    assert b.dtype == np.float32
    err = float(np.abs(a - b).max())
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal.
    assert 0 < err < 0.1 * float(np.abs(a).max()), err


def test_checkpoint_every_s_minus_one_never_saves(tmp_path, monkeypatch):
  from benchmark.checkpoint import TrainCheckpoint
  calls = []
  monkeypatch.setattr(TrainCheckpoint, "save", lambda self, *a: calls.append(a))
  ctx = smoke_context(tmp_path, epochs=3, checkpoint_every_s=-1.0)
  res = ctx.component(ctx.spec("fs", 0))
  assert res.record["status"] == "ok" and res.record["timings"]["resumed_from_epoch"] == 0
  assert calls == [] and not (tmp_path / "ckpt").exists()
  ctx0 = smoke_context(tmp_path / "every_epoch", epochs=3, checkpoint_every_s=0.0)
  ctx0.component(ctx0.spec("fs", 0))
  assert [a[0] for a in calls] == [1, 2]   # 0: after every epoch but the last
