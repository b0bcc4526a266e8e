"""Unit tests of the pure core on fabricated records and a fake context (no
training): the table helpers, the paper-table helpers, the store's
housekeeping, the sweep's protocol (learning-rate choice) and the runs over
seeds. Fast; ``make mutation`` runs them with test_rules.py and the table tests."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import ml_collections
import numpy as np
import pandas as pd
import pytest

import methods  # noqa: F401  (registers the component kinds)
from benchmark import paper_tables as PT
from benchmark import protocol, sweep, tables
from benchmark.components import ComponentFailed
from benchmark.data import REGRESSION
from benchmark.errors import UserError
from benchmark.store import CHECKSUM, RunStore, key_of, record_checksum


# -- tables ----------------------------------------------------------------------
def test_headline_ood_prefers_ood_then_single_groups_then_any():
  assert tables.headline_ood(["test_id", "ood/a", "ood/b"]) == ["ood/a", "ood/b"]
  assert tables.headline_ood(["ood/a", "ood/b", "ood/c"], exclude=("c",)) == ["ood/a", "ood/b"]
  assert tables.headline_ood(["ood/time", "ood/product/x", "ood/product/y"]) == ["ood/time"]
  assert tables.headline_ood(["ood/product/x", "ood/product/y"]) == [
      "ood/product/x", "ood/product/y"]
  assert tables.headline_ood(["val", "test_id"]) == []


def test_ood_aggregates_families_and_exclusions():
  keys = ["val", "test_id", "ood/a", "ood/b", "ood/tiny"]
  assert tables.ood_aggregates(keys, exclude=("tiny",)) == {"ood": ["ood/a", "ood/b"]}
  fam = tables.ood_aggregates(["ood/time", "ood/product/x", "ood/product/y", "ood/shop/z"])
  assert fam == {"ood/products": ["ood/product/x", "ood/product/y"], "ood/shops": ["ood/shop/z"]}
  assert tables.ood_aggregates(["test_id"]) == {}


def _frame(rows):
  return pd.DataFrame(rows, columns=["method", "split", "std", "n_seeds"])


def test_identical_across_seeds_only_when_every_split_has_zero_std_over_seeds():
  f = _frame([("a", "x", 0.0, 2), ("a", "y", 0.0, 2),      # seeds changed nothing
              ("b", "x", 0.0, 2), ("b", "y", 0.1, 2),      # one split moved
              ("c", "x", np.nan, 1),                       # one seed: nothing to say
              ("d", "x", 0.0, 3), ("d", "y", np.nan, 3)])  # a failed split
  assert tables.identical_across_seeds(f) == ["a"]


def test_dataset_frame_mean_std_counts_and_notes():
  recs = [{"dataset": "d", "method": "m", "seed": s, "status": "ok", "metric": "rmse",
           "scores": {"test_id": 1.0 + s, "ood/a": 2.0, "ood/b": 4.0 + 2 * s},
           "n_examples": {"test_id": 7, "ood/a": 3, "ood/b": 5}} for s in (0, 1, 2)]
  recs.append({"dataset": "d", "method": "bad", "seed": 0, "status": "failed",
               "metric": "rmse", "n_examples": {"test_id": 7}})
  # groups of 3 and 5 examples: kept in the aggregates only with min_group_size=0
  f = tables.dataset_frame(recs, ["m", "bad"], notes={"ood": "unweighted"},
                           method_notes={"bad": "diverged"}, min_group_size=0)
  row = lambda m, s: f[(f.method == m) & (f.split == s)].iloc[0]
  assert list(f.columns) == tables.COLUMNS
  assert list(dict.fromkeys(f.split)) == ["test_id", "ood", "ood:weighted", "ood:worst",
                                          "ood/a", "ood/b"]
  assert row("m", "test_id")["mean"] == 2.0 and row("m", "test_id")["std"] == 1.0
  assert row("m", "ood")["mean"] == pytest.approx(np.mean([3.0, 4.0, 5.0]))
  assert row("m", "ood")["n_examples"] == 8 and row("m", "ood")["n_seeds"] == 3
  assert row("m", "ood")["note"] == "unweighted" and row("m", "test_id")["note"] == ""
  assert np.isnan(row("bad", "test_id")["mean"]) and row("bad", "test_id")["n_seeds"] == 0
  assert row("bad", "test_id")["note"] == "diverged"
  w = tables.wide(f, {"m": "Method M"})
  assert list(w.index) == ["Method M", "bad"] and w.loc["Method M", "test_id"] == "2.000 ± 1.000"
  assert w.loc["bad", "test_id"] == "failed"


def test_latex_escape():
  # pandas' own rules (those of Styler.format(escape="latex")): "$" too.
  assert tables.latex_escape("a_b & c%#\\ $x$") == r"a\_b \& c\%\#\textbackslash \space \$x\$"


# -- paper tables -----------------------------------------------------------------
def test_numbers_text_runs_of_consecutive_numbers():
  assert PT.numbers_text([1, 2, 3, 4, 5, 9, 10, 11, 12, 14, 17]) == "1–5, 9–12, 14, 17"
  assert PT.numbers_text([1, 2, 4]) == "1, 2, 4"
  assert PT.numbers_text([7]) == "7"
  assert PT.numbers_text() == PT.numbers_text(PT.NUMBERS) == "1–5, 9–14, 17"


def test_paper_cell_and_text_layout():
  cell = lambda mean, std, note, lo=np.nan, hi=np.nan, metric="rmse": PT._cell(
      SimpleNamespace(mean=mean, std=std, note=note, ci_low=lo, ci_high=hi, metric=metric))
  assert cell(1.23456, np.nan, "") == "1.235"
  assert cell(1.0, 0.25, "") == "1.000 ± 0.250"
  assert cell(1.0, 0.25, "", 0.9, 1.1) == "1.000 [0.900, 1.100]"
  assert cell(71.234, 0.25, "", 70.0, 72.0, "acc") == "71.2 [70.0, 72.0]"
  assert cell(np.nan, np.nan, "failed: nan") == "failed"
  assert cell(np.nan, np.nan, "no data") == "n/a"
  t = PT.TABLES[14]
  recs = [{"dataset": PT.ML, "method": "levi", "seed": 0, "status": "ok", "metric": "rmse",
           "scores": {"test_id": 0.9, "ood/a": 1.0, "ood/b": 1.2},
           "n_examples": {"test_id": 50, "ood/a": 40, "ood/b": 60}}]
  text = PT.to_text(t, PT.frame(t, recs, {PT.AZ: "no data"}))
  lines = text.splitlines()
  assert "MovieLens" in lines[0] and "Amazon Review" in lines[0]
  levi = next(ln for ln in lines if ln.startswith("LEVI with light-tuned"))
  assert levi.split()[-5:] == ["0.900", "1.100", "n/a", "n/a", "n/a"]
  pre = next(ln for ln in lines if ln.startswith("LEVI with pre-trained"))
  assert pre.split()[-5:] == ["n/a"] * 5


def test_headline_value_and_split_values():
  rec = {"scores": {"test_id": 1.0, "ood/a": 2.0, "ood/b": 4.0, "ood/c": 9.0}}
  assert PT.headline_value(rec) == 5.0
  assert PT.headline_value(rec, exclude=("c",)) == 3.0
  assert PT.headline_value({"scores": {"test_id": 1.0}}) is None
  assert PT.split_values(rec, "ood") == 5.0 and PT.split_values(rec, "test_id") == 1.0
  assert PT.split_values(rec, "ood/zzz") is None
  assert PT._n_examples({"n_examples": {"ood/a": 2, "ood/b": 3}}, "ood") == 5
  assert PT._n_examples({"n_examples": {"ood/a": 2}}, "test_id") == 0


def test_paper_table_extra_rows():
  t = PT.TABLES[1]
  more = t.with_more_extras([("l2sp", "L2-SP†"), ("ft", "dup")])
  assert more.extra_rows == t.extra_rows + (("l2sp", "L2-SP†"),)   # a paper row is not added
  assert PT.TABLES[5].with_more_extras([("l2sp", "x")]) is PT.TABLES[5]  # no extras: unchanged
  rel = more.relabel_extras({"soup_uniform": "Soup U", "l2sp": "L2-SP"})
  assert rel.extra_rows[0] == ("soup_uniform", "Soup U" + PT.EXTRA_MARK)
  assert rel.extra_rows[1] == t.extra_rows[1]            # no label given: kept
  assert rel.extra_rows[-1] == ("l2sp", "L2-SP" + PT.EXTRA_MARK)
  assert rel.rows == t.rows
  assert PT.TABLES[1].datasets() == [PT.ML, PT.AZ] and PT.TABLES[2].datasets() == [PT.MED, PT.IMN]
  assert t.methods == [m for m, _ in t.rows + t.extra_rows]


def test_ranks_best_and_second_per_column_by_metric_direction():
  t = PT.TABLES[4]   # accuracy: higher is better
  recs = [{"dataset": PT.MED, "method": m, "seed": 0, "status": "ok", "metric": "accuracy",
           "scores": {"test_id": v, "ood/x": v}, "n_examples": {"test_id": 1, "ood/x": 1}}
          for m, v in (("lora", 60.0), ("levi_lora", 70.0))]
  f = PT.frame(t, recs, {PT.IMN: "no data"})
  r = PT._ranks(t, f)
  assert r[("LEVI w. LoRA-tuned ViT", "Medical", "ID Acc")] == "best"
  assert r[("LoRA-tuned ViT", "Medical", "ID Acc")] == "second"
  assert not any(k[1] == "ImageNet" for k in r)


# -- store ------------------------------------------------------------------------
def test_check_writable_and_sweep_temporaries(tmp_path):
  store = RunStore(tmp_path / "wd")
  store.check_writable()
  assert store.runs.is_dir() and not (store.runs / ".write-test").exists()
  old = store.runs / "components" / ".r.json.abcd.tmp"
  old.parent.mkdir(parents=True)
  young = store.runs / ".s.json.efgh.tmp"
  cache_old = store.root / "cache" / ".t.npy.ijkl.tmp"
  cache_old.parent.mkdir()
  keep = store.runs / "r.json"
  for p in (old, young, cache_old, keep):
    p.write_text("x")
  past = time.time() - 7200
  for p in (old, cache_old, keep):
    os.utime(p, (past, past))
  assert store.sweep_temporaries() == 2
  assert not old.exists() and not cache_old.exists() and young.exists() and keep.exists()
  assert store.sweep_temporaries(older_than_s=-1) == 1 and not young.exists()


def test_check_writable_refuses_a_read_only_workdir(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes anywhere")
  (tmp_path / "ro").mkdir(mode=0o500)
  with pytest.raises(UserError, match="not writable"):
    RunStore(tmp_path / "ro").check_writable()


def test_put_aside_moves_the_record_and_its_artefacts(tmp_path, capsys):
  store = RunStore(tmp_path)
  path = store.component_path("ft", "k")
  store.write(path, {"status": "ok"})
  for suf in (".npz", ".preds.npz"):
    path.with_name("k" + suf).write_bytes(b"x")
  store.put_aside(path, "is damaged", (".npz", ".preds.npz"))
  left = sorted(p.name for p in path.parent.iterdir())
  assert len(left) == 3 and all(".corrupt-" in n for n in left)
  assert {n.split(".corrupt-")[0] for n in left} == {"k.json", "k.npz", "k.preds.npz"}
  assert store.set_aside and all(p.exists() for p in store.set_aside)
  assert "is damaged; moved aside" in capsys.readouterr().err


def test_write_adds_a_checksum_of_what_is_read_back(tmp_path):
  store = RunStore(tmp_path)
  p = tmp_path / "r.json"
  store.write(p, {"t": (1, 2), "n": np.float32(0.5), "i": np.int64(3), 1: "a",
                  "arr": np.arange(2)})
  rec = json.loads(p.read_text())
  assert rec["t"] == [1, 2] and rec["n"] == 0.5 and rec["i"] == 3 and rec["1"] == "a"
  assert rec["arr"] == [0, 1]
  assert rec[CHECKSUM] == record_checksum(rec) and store.read(p) == rec
  assert key_of({"a": 1, "b": [1, 2]}) == key_of({"b": [1, 2], "a": 1})


# -- the protocol (sweep.py): learning-rate choice on ID validation ----------------
class FakeSpec(SimpleNamespace):
  def all_specs(self):
    return [*self.deps, self]


class FakeCtx:
  """Enough of ``Context`` for the sweep: specs per (kind, seed, lr) and a
  component whose ID validation score is ``val[(kind, lr)]``."""

  def __init__(self, grid="1e-3,1e-2,1e-1", grid_lp="", val=None, task=REGRESSION,
               failing=(), lrs=None, root=None):
    self.config = ml_collections.ConfigDict({"preset": "cpu",
                                             "protocol": {"lr_grid": grid,
                                                          "lr_grid_lp": grid_lp}})
    self.task, self.val, self.failing = task, val or {}, set(failing)
    self.lrs = dict(lrs or {})
    self.trained, self.messages = [], []
    self.store = RunStore(root or Path("/nonexistent-store"))

  def with_lrs(self, lrs):
    c = FakeCtx.__new__(FakeCtx)
    c.__dict__.update(self.__dict__)
    c.lrs = {**self.lrs, **lrs}
    return c

  def spec_with_lr(self, kind, seed, lr):
    deps = [FakeSpec(kind="lp", seed=seed, lr=self.lrs.get("lp", 0.5), deps=[],
                     key=f"lp-{seed}-{self.lrs.get('lp', 0.5)}")] if kind == "lp_ft" else []
    dep = f"<{deps[0].key}" if deps else ""
    return FakeSpec(kind=kind, seed=seed, lr=lr, deps=deps, key=f"{kind}-{seed}-{lr}{dep}")

  def spec(self, kind, seed):
    return self.spec_with_lr(kind, seed, self.lrs.get(kind, 0.5))

  def component(self, spec):
    self.trained.append(spec.key)
    if (spec.kind, spec.lr) in self.failing:
      raise ComponentFailed("diverged")
    return SimpleNamespace(record={"scores": {"val": self.val.get((spec.kind, spec.lr), 1.0)}})

  def progress(self, msg):
    self.messages.append(msg)


class FakeMethod:
  def __init__(self, name, kinds):
    self.name, self.kinds = name, kinds

  def specs(self, ctx, seed):
    return {k: ctx.spec(k, seed) for k in self.kinds}

  def config(self, ctx):
    return {}


def test_grid_per_kind_and_tuned_kinds_dependencies_first():
  ctx = FakeCtx(grid="1e-3, 1e-2", grid_lp="0.1")
  assert sweep.grid(ctx, "ft") == [1e-3, 1e-2] and sweep.grid(ctx, "lp") == [0.1]
  ms = [FakeMethod("a", ["lp_ft"]), FakeMethod("b", ["ft", "lp"]), FakeMethod("c", ["pretrain"])]
  assert sweep.tuned_kinds(ctx, ms, 0) == ["lp", "lp_ft", "ft"]   # pretrain is not tuned
  # A kind trained at another kind's choice brings that kind in.
  assert sweep.tuned_kinds(ctx, [FakeMethod("d", ["l2sp"])], 0) == ["ft"]


def test_select_keeps_the_best_val_score_first_on_ties_and_records_every_candidate():
  val = {("ft", 1e-3): 0.9, ("ft", 1e-2): 0.7, ("ft", 1e-1): 0.7}
  ctx = FakeCtx(val=val)
  ch = sweep.select(ctx, [FakeMethod("ft", ["ft"])], 0)
  assert list(ch) == ["ft"] and ch["ft"].lr == 1e-2 and ch["ft"].val == 0.7
  assert ch["ft"].kind == "ft" and ch["ft"].to_json()["kind"] == "ft"
  assert [c["lr"] for c in ch["ft"].candidates] == [1e-3, 1e-2, 1e-1]
  assert ch["ft"].candidates[0] == {"lr": 1e-3, "key": "ft-0-0.001", "status": "ok", "val": 0.9}
  assert sweep.chosen_lrs(ch) == {"ft": 1e-2}
  assert ch["ft"].to_json()["candidates"][1]["val"] == 0.7 and ch["ft"].to_json()["lr"] == 1e-2
  assert ctx.messages == ["selected lr 0.01 for ft (ID val 0.7000)"]
  # Accuracy: higher is better.
  acc = sweep.select(FakeCtx(val=val, task="classification"), [FakeMethod("ft", ["ft"])], 0)
  assert acc["ft"].lr == 1e-3


def test_select_skips_failed_points_and_fails_when_every_point_fails():
  val = {("ft", 1e-3): 0.9, ("ft", 1e-2): 0.1}
  ch = sweep.select(FakeCtx(val=val, failing=[("ft", 1e-2)]), [FakeMethod("ft", ["ft"])], 0)
  assert ch["ft"].lr == 1e-3
  assert [c["status"] for c in ch["ft"].candidates] == ["ok", "failed", "ok"]
  assert ch["ft"].candidates[1]["val"] is None
  bad = FakeCtx(grid="1e-3,1e-2", failing=[("ft", 1e-3), ("ft", 1e-2)])
  with pytest.raises(ComponentFailed, match=r"every learning rate of ft's grid \[0.001, 0.01\]"):
    sweep.select(bad, [FakeMethod("ft", ["ft"])], 0)


def test_select_builds_later_kinds_with_earlier_choices_and_shards_split_the_grid():
  val = {("lp", 1e-3): 0.5, ("lp", 1e-2): 0.4, ("lp", 1e-1): 0.6}
  ctx = FakeCtx(val=val, grid_lp="1e-3,1e-2,1e-1")
  ch = sweep.select(ctx, [FakeMethod("lp_ft", ["lp_ft"])], 0)
  assert list(ch) == ["lp", "lp_ft"] and ch["lp"].lr == 1e-2
  # LP->FT's grid is built on the chosen LP.
  assert [c["key"] for c in ch["lp_ft"].candidates] == [
      f"lp_ft-0-{lr}<lp-0-0.01" for lr in (1e-3, 1e-2, 1e-1)]
  # No grid: nothing trained, nothing chosen.
  assert sweep.select(FakeCtx(grid=""), [FakeMethod("ft", ["ft"])], 0) == {}
  # Shard 1 of 2 trains its own share (the odd points) first.
  sh = FakeCtx()
  sweep.select(sh, [FakeMethod("ft", ["ft"])], 0, shard=(1, 2))
  assert sh.trained[0] == "ft-0-0.01"
  sh0 = FakeCtx()
  sweep.select(sh0, [FakeMethod("ft", ["ft"])], 0, shard=(0, 2))
  assert sh0.trained[:2] == ["ft-0-0.001", "ft-0-0.1"]


def test_lr_to_choose_and_pending(tmp_path):
  ctx = FakeCtx(grid="1e-3,1e-2", root=tmp_path)
  assert sweep.lr_to_choose(ctx, "ft") and sweep.lr_to_choose(ctx, "l2sp")
  assert not sweep.lr_to_choose(ctx, "lp")                  # no LP grid
  assert not sweep.lr_to_choose(ctx, "pretrain")            # not tuned
  assert not sweep.lr_to_choose(ctx.with_lrs({"ft": 1e-3}), "ft")   # already chosen
  assert not sweep.lr_to_choose(FakeCtx(grid=""), "ft")
  todo = sweep.pending(ctx, [FakeMethod("ft", ["ft"])], [0, 1])
  assert [(s.key, why) for s, why in todo] == [
      ("ft-0-0.001", "grid"), ("ft-0-0.01", "grid"), ("ft-1-0.001", "seeds")]
  # What the store holds is not pending.
  p = ctx.store.component_path("ft", "ft-0-0.01")
  p.parent.mkdir(parents=True)
  p.write_text("{}")
  assert [s.key for s, _ in sweep.pending(ctx, [FakeMethod("ft", ["ft"])], [0, 1])] == [
      "ft-0-0.001", "ft-1-0.001"]


# -- runs over seeds (protocol.py) -------------------------------------------------
class RunCtx(FakeCtx):
  def __init__(self, root, fail=False):
    super().__init__(root=root)
    self.info = SimpleNamespace(name="toy", metric="rmse", eval_classes=lambda k: None)
    self.fingerprint, self.methods_reused, self.fail = "fp", 0, fail
    self.splits = SimpleNamespace(eval_splits=lambda: {
        "val": SimpleNamespace(label=np.array([1.0, 2.0])),
        "test_id": SimpleNamespace(label=np.array([0.0, 0.0, 0.0]))})

  def component(self, spec):
    self.trained.append(spec.key)
    if self.fail:
      raise ComponentFailed("diverged at step 3")
    return SimpleNamespace(record={"n_trainable": 7}, spec=spec)


class Const(FakeMethod):
  def combine(self, ctx, seed, comps):
    return SimpleNamespace(preds={"val": np.array([1.0, 4.0]), "test_id": np.full(3, seed + 1.0)},
                           info={"seed": seed})


def test_run_method_records_scores_and_a_rerun_reads_them(tmp_path):
  ctx = RunCtx(tmp_path)
  m = Const("c", ["ft"])
  key, ident = protocol.method_key(ctx, m, 1)
  assert ident == {"method": "c", "dataset": "toy", "data": "fp", "seed": 1,
                   "components": {"ft": "ft-1-0.5"}, "config": {}}
  assert key == key_of(ident) and protocol.method_key(ctx, m, 2)[0] != key
  rec = protocol.run_method(ctx, m, 1)
  assert rec["status"] == "ok" and rec["key"] == key and rec["metric"] == "rmse"
  assert rec["scores"] == {"val": pytest.approx(np.sqrt(2.0)), "test_id": 2.0}
  assert rec["n_examples"] == {"val": 2, "test_id": 3} and rec["n_trainable"] == 7
  assert rec["info"] == {"seed": 1}
  assert ctx.store.method_path("toy", "c", key).exists()
  again = RunCtx(tmp_path)
  assert protocol.run_method(again, m, 1)["scores"] == rec["scores"]
  assert again.trained == [] and again.methods_reused == 1


def test_run_method_records_a_failure(tmp_path, capsys):
  ctx = RunCtx(tmp_path, fail=True)
  rec = protocol.run_method(ctx, Const("c", ["ft"]), 0)
  assert rec["status"] == "failed" and rec["reason"] == "diverged at step 3"
  assert rec["n_examples"] == {"val": 2, "test_id": 3} and "scores" not in rec
  assert "warning: c seed 0: diverged at step 3" in capsys.readouterr().err


def test_run_and_collect_every_method_and_seed(tmp_path):
  ms = [Const("a", ["ft"]), Const("b", ["fs"])]
  ctx = RunCtx(tmp_path)
  assert protocol.collect(ctx, ms, [0, 1]) is None
  recs = protocol.run(ctx, ms, [0, 1], shard=(0, 2))
  assert [(r["method"], r["seed"]) for r in recs] == [("a", 0), ("b", 0)]
  assert protocol.collect(ctx, ms, [0, 1]) is None          # the other shard's share missing
  protocol.run(ctx, ms, [0, 1], shard=(1, 2))
  got = protocol.collect(ctx, ms, [0, 1])
  assert [(r["method"], r["seed"]) for r in got] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
  assert [r["scores"]["test_id"] for r in got] == [1.0, 2.0, 1.0, 2.0]


def test_pending_after_the_grid_is_stored_uses_its_choice_not_the_stand_in(tmp_path):
  ctx = FakeCtx(grid="1e-3,1e-2", root=tmp_path)
  for lr, val in ((1e-3, 0.9), (1e-2, 0.5)):   # RMSE: 1e-2 wins
    ctx.store.write(ctx.store.component_path("ft", f"ft-0-{lr}"),
                    {"status": "ok", "scores": {"val": val}})
  todo = sweep.pending(ctx, [FakeMethod("ft", ["ft"])], [0, 1])
  assert [(s.key, why) for s, why in todo] == [("ft-1-0.01", "seeds")]
  assert sweep.stored_choice(ctx, [1e-3, 1e-2], [ctx.spec_with_lr("ft", 0, v)
                                                 for v in (1e-3, 1e-2)]) == 1e-2
  # A failed grid point is skipped; one missing: no choice yet.
  ctx.store.write(ctx.store.component_path("ft", "ft-0-0.01"), {"status": "failed"})
  assert sweep.stored_choice(ctx, [1e-3, 1e-2], [ctx.spec_with_lr("ft", 0, v)
                                                 for v in (1e-3, 1e-2)]) == 1e-3
  assert sweep.stored_choice(ctx, [1e-3, 3.0], [ctx.spec_with_lr("ft", 0, v)
                                                for v in (1e-3, 3.0)]) is None


# -- kills of surviving mutants (make mutation; docs/testing.md) -------------------
def test_store_keys_are_pinned_and_canonical():
  from benchmark.store import canonical, versions
  # Pinned: a change of the canonical form would re-key (orphan) every record.
  assert canonical({"b": (1, 2), "a": 1}) == '{"a":1,"b":[1,2]}'
  assert key_of({"a": 1, "b": [1, 2]}) == "8baa73198470c7bb4c3c"
  assert key_of({"x": np.int64(3), "y": np.float32(0.5), "z": np.arange(2), "s": {4}}) == \
      key_of({"x": 3, "y": 0.5, "z": [0, 1], "s": [4]})
  with pytest.raises(TypeError, match="not JSON-serialisable: <class 'object'>"):
    key_of({"o": object()})
  assert set(versions()) == {"python", "jax", "jaxlib", "flax", "optax", "numpy"}
  assert versions()["numpy"] == np.__version__


def test_numbers_text_three_in_a_row_is_a_range():
  assert PT.numbers_text([1, 2, 3]) == "1–3"
  assert PT.headline_value({}) is None


def test_caption_plus_minus_becomes_latex_math():
  t = PT.TABLES[14]
  tex = PT.to_latex(t, PT.frame(t, [], {PT.ML: "no data", PT.AZ: "no data"}), "a ± b")
  assert r"\caption{a $\pm$ b}" in tex


def test_identical_across_seeds_keeps_the_frames_method_order():
  f = _frame([("b", "x", 0.0, 2), ("a", "x", 0.0, 2)])
  assert tables.identical_across_seeds(f) == ["b", "a"]


def _toy_records(methods, splits=("test_id",), metric="rmse"):
  return [{"dataset": "d", "method": m, "seed": 0, "status": "ok", "metric": metric,
           "scores": {s: 1.0 + i for s in splits}, "n_examples": {s: 1 for s in splits}}
          for i, m in enumerate(methods)]


def test_wide_and_latex_with_one_method_and_partial_labels():
  f = tables.dataset_frame(_toy_records(["m"]))
  w = tables.wide(f)
  assert w.index.name is None and w.columns.name is None
  tex = tables.to_latex(f, {}, "c")           # one method: best, no second
  assert r"\textbf{1.000}" in tex and r"\underline" not in tex
  f2 = tables.dataset_frame(_toy_records(["m", "n"]))
  tex2 = tables.to_latex(f2, {"m": "Method M"}, "c")
  assert "Method M" in tex2 and "\nn &" in tex2    # an unlabelled method keeps its name


def test_ranks_skip_a_split_without_numbers_and_go_on():
  recs = [{"dataset": "d", "method": m, "seed": 0, "status": "ok", "metric": "rmse",
           "scores": {"ood/b": v}, "n_examples": {"test_id": 1, "ood/b": 1}}
          for m, v in (("m", 1.0), ("n", 2.0))]
  f = tables.dataset_frame(recs)   # test_id: no scores (NaN), then ood/b
  styles = tables._rank_styles(f)
  assert (styles["test_id"] == "").all()
  assert "textbf" in styles.loc["m", "ood/b"] and "underline" in styles.loc["n", "ood/b"]


def test_grid_errors_name_the_config_key():
  with pytest.raises(UserError, match=r"protocol\.lr_grid='abc'"):
    sweep.grid(FakeCtx(grid="abc"), "ft")
  with pytest.raises(UserError, match=r"protocol\.lr_grid_lp="):
    sweep.grid(FakeCtx(grid_lp="-1"), "lp")


def test_select_goes_on_past_a_kind_without_a_grid():
  ctx = FakeCtx(grid="1e-3,1e-2", grid_lp="", val={("lp_ft", 1e-2): 0.1})
  ch = sweep.select(ctx, [FakeMethod("lp_ft", ["lp_ft"])], 0)
  assert list(ch) == ["lp_ft"] and ch["lp_ft"].lr == 1e-2


def test_pending_with_one_seed_and_without_a_grid(tmp_path):
  ctx = FakeCtx(grid="", root=tmp_path)
  assert [s.key for s, _ in sweep.pending(ctx, [FakeMethod("ft", ["ft"])], [0])] == ["ft-0-0.5"]
  ctx = FakeCtx(grid="1e-3", root=tmp_path)
  assert [s.key for s, _ in sweep.pending(ctx, [FakeMethod("ft", ["ft"])], [3])] == [
      "ft-3-0.001"]


class Strict(Const):
  """Checks what run_method hands it: the context, its seed's components."""

  def combine(self, ctx, seed, comps):
    assert isinstance(ctx, RunCtx) and set(comps) == set(self.kinds)
    assert all(c.spec.seed == seed for c in comps.values())
    return super().combine(ctx, seed, comps)

  def config(self, ctx):
    assert ctx is not None
    return {"k": 1}


def test_run_method_hands_combine_the_context_and_counts(tmp_path):
  ctx = RunCtx(tmp_path)
  calls = []
  ctx.info.eval_classes = lambda k: calls.append(k)
  ctx.component = lambda spec: (ctx.trained.append(spec.key), SimpleNamespace(
      record={"n_trainable": 7} if spec.kind == "ft" else {}, spec=spec))[1]
  m = Strict("s", ["ft", "fs"])
  rec = protocol.run_method(ctx, m, 1)
  assert rec["config"] == {"k": 1} and rec["n_trainable"] == 7   # no count: 0
  # eval classes asked per split: for the scores, then for the stored predictions
  assert calls == ["val", "test_id"] * 2 and sorted(ctx.trained) == ["fs-1-0.5", "ft-1-0.5"]
  assert protocol.preds_path(ctx.store.method_path("toy", "s", rec["key"])).exists()
  assert 0 <= rec["combine_s"] < 60
  assert ctx.messages == ["s seed 1"]
  again = RunCtx(tmp_path)
  protocol.run_method(again, m, 1)
  protocol.run_method(again, m, 1)
  assert again.methods_reused == 2 and again.messages == ["s seed 1 (stored)"] * 2


def test_failed_record_keeps_key_and_metric(tmp_path):
  rec = protocol.run_method(RunCtx(tmp_path, fail=True), Const("c", ["ft"]), 0)
  assert rec["key"] == protocol.method_key(RunCtx(tmp_path), Const("c", ["ft"]), 0)[0]
  assert rec["metric"] == "rmse"


def test_store_layout_is_pinned(tmp_path):
  store = RunStore(tmp_path)
  assert store.component_path("ft", "k") == tmp_path / "runs" / "components" / "ft" / "k.json"
  assert store.method_path("d", "m", "k") == tmp_path / "runs" / "methods" / "d" / "m" / "k.json"


def test_new_temp_is_a_fresh_write_only_file_beside_the_path(tmp_path, monkeypatch):
  import stat

  from benchmark import store as S
  old = os.umask(0o022)
  try:
    fd, tmp = S.new_temp(tmp_path / "r.json")
  finally:
    os.umask(old)
  assert tmp.parent == tmp_path and tmp.name.startswith(".r.json.") and tmp.name.endswith(".tmp")
  assert len(tmp.name) == len(".r.json.") + 12 + len(".tmp")        # 6 random bytes, hex
  assert stat.S_IMODE(tmp.stat().st_mode) == 0o644                  # 0666 less the umask
  with pytest.raises(OSError):
    os.read(fd, 1)                                                  # write-only
  os.close(fd)
  fd, tmp2 = S.new_temp(tmp_path / "r.json", read_write=True)
  os.write(fd, b"ab")
  os.lseek(fd, 0, 0)
  assert os.read(fd, 2) == b"ab"
  os.close(fd)
  import fcntl
  fd, _ = S.new_temp(tmp_path / "c")
  assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
  os.close(fd)
  # A name already taken is skipped; after 100 taken names it gives up.
  names = iter(["aaaaaaaaaaaa"] * 100 + ["bbbbbbbbbbbb"])
  monkeypatch.setattr(S.secrets, "token_hex", lambda n: next(names))
  (tmp_path / ".x.aaaaaaaaaaaa.tmp").write_text("taken")
  with pytest.raises(FileExistsError) as e:
    S.new_temp(tmp_path / "x")
  assert e.value.errno == __import__("errno").EEXIST and "no free temporary name" in str(e.value)
  assert str(tmp_path / "x") in str(e.value)
  names2 = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
  monkeypatch.setattr(S.secrets, "token_hex", lambda n: next(names2))
  fd, got = S.new_temp(tmp_path / "x")
  os.close(fd)
  assert got.name == ".x.bbbbbbbbbbbb.tmp"


def test_atomic_write_errors(tmp_path, monkeypatch):
  import errno

  from benchmark import store as S
  real = os.replace

  def full(src, dst):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(S.os, "replace", full)
  with pytest.raises(UserError, match=r"cannot write .*r\.json: No space left on device; free"):
    S.atomic_write_text(tmp_path / "r.json", "x")
  assert list(tmp_path.iterdir()) == []            # the temporary is gone

  def other(src, dst):
    raise OSError(errno.EIO, "I/O error")
  monkeypatch.setattr(S.os, "replace", other)
  with pytest.raises(OSError) as e:
    S.atomic_write_text(tmp_path / "r.json", "x")
  assert not isinstance(e.value, UserError) and list(tmp_path.iterdir()) == []
  monkeypatch.setattr(S.os, "replace", real)

  def boom(path, read_write=False):
    raise KeyboardInterrupt
  monkeypatch.setattr(S, "new_temp", boom)
  with pytest.raises(KeyboardInterrupt):
    S.atomic_write_text(tmp_path / "sub" / "r.json", "x")


def test_read_sets_aside_what_is_not_a_json_object(tmp_path, capsys):
  store = RunStore(tmp_path)
  p = tmp_path / "r.json"
  p.write_text("[1, 2]")
  assert store.read(p) is None
  assert "is not valid JSON (not a JSON object)" in capsys.readouterr().err
  p.write_text('{"a": 1}')          # no checksum: read as is
  assert store.read(p) == {"a": 1}
  p.write_bytes('{"a": "é"}'.encode("utf-8"))
  assert store.read(p) == {"a": "é"}


def test_split_order_with_a_family_beside_a_single_group():
  recs = [{"n_examples": {"test_id": 1, "ood/time": 1, "ood/product/b": 1, "ood/product/a": 1}}]
  assert tables.split_order(recs) == ["test_id", "ood/time", "ood/products",
                                      "ood/products:weighted", "ood/products:worst",
                                      "ood/product/b", "ood/product/a"]
  assert tables.split_order([{"n_examples": {"test_id": 1, "ood/x": 1}}]) == [
      "test_id", "ood", "ood/x"]


def test_check_writable_twice_and_a_missing_array_file(tmp_path):
  store = RunStore(tmp_path)
  store.check_writable()
  store.check_writable()          # the runs folder exists already: fine
  assert RunStore.unreadable_arrays(tmp_path / "none.npz") == "is missing"
  (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut")
  assert RunStore.unreadable_arrays(tmp_path / "cut.npz").startswith("is unreadable (")


def test_stored_choice_none_when_every_grid_point_failed(tmp_path):
  ctx = FakeCtx(grid="1e-3,1e-2", root=tmp_path)
  specs = [ctx.spec_with_lr("ft", 0, v) for v in (1e-3, 1e-2)]
  for s in specs:
    ctx.store.write(ctx.store.component_path("ft", s.key), {"status": "failed"})
  assert sweep.stored_choice(ctx, [1e-3, 1e-2], specs) is None


def test_paper_frame_notes_a_failure_without_reason_and_a_missing_split():
  t = PT.TABLES[14]
  recs = [{"dataset": PT.ML, "method": "levi", "seed": 0, "status": "failed", "metric": "rmse"},
          {"dataset": PT.ML, "method": "levi_pretrained", "seed": 0, "status": "ok",
           "metric": "rmse", "scores": {"test_id": 1.0}, "n_examples": {"test_id": 3}}]
  f = PT.frame(t, recs, {})
  cell = lambda m, s: f[(f.method == m) & (f.split == s) & (f.dataset == PT.ML)].iloc[0]
  assert cell("levi", "test_id")["note"] == "failed: "
  assert cell("levi_pretrained", "ood")["note"] == "no ood split"
  assert cell("levi_pretrained", "test_id")["note"] == ""
