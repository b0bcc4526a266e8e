"""End to end: every method through the CLI, component reuse, reruns that
train nothing and rewrite byte-identical tables."""
from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark import protocol
from benchmark.tables import COLUMNS
from methods import METHODS
from tests.harness import smoke_context

ROOT = Path(__file__).resolve().parents[1]
FT_USERS = ["ft", "ft_zeroshot", "ft_robust", "ft_fs", "a1", "a2"]


def test_ft_trained_once_per_seed_for_every_method_that_reuses_it(tmp_path):
  ctx = smoke_context(tmp_path)
  recs = protocol.run(ctx, [METHODS.get(m) for m in FT_USERS], [0, 1])
  assert all(r["status"] == "ok" for r in recs)
  assert len(ctx.trained) == len(set(ctx.trained))  # nothing trained twice
  kinds = collections.Counter()
  for key in ctx.trained:
    for kind_dir in (tmp_path / "runs" / "components").iterdir():
      if (kind_dir / f"{key}.json").exists():
        kinds[kind_dir.name] += 1
  # ft: seeds 0 and 1, plus A1's second members (seeds 1000 and 1001).
  assert kinds["ft"] == 4
  ft_keys = {ctx.spec("ft", s).key for s in (0, 1)}
  assert ft_keys <= set(ctx.trained)
  for r in recs:  # every FT user points at the very same FT component
    assert r["components"]["ft"] in ft_keys
  # A new invocation on the same store trains nothing.
  again = smoke_context(tmp_path)
  recs2 = protocol.run(again, [METHODS.get(m) for m in FT_USERS], [0, 1])
  assert again.trained == []
  assert [r["scores"] for r in recs2] == [r["scores"] for r in recs]


def _cli(*args):
  return subprocess.run([sys.executable, "run_benchmark.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_all_methods_then_rerun_trains_nothing_and_is_byte_identical(tmp_path):
  args = ["--method", "all", "--dataset", "synthetic_spurious", "--seeds", "0,1",
          "--preset", "smoke", "--workdir", str(tmp_path)]
  first = _cli(*args)
  assert first.returncode == 0, first.stderr
  csv = tmp_path / "tables" / "synthetic_spurious.csv"
  tex = tmp_path / "tables" / "synthetic_spurious.tex"
  seeds = tmp_path / "tables" / "synthetic_spurious.seeds.csv"
  csv1, tex1, seeds1 = csv.read_bytes(), tex.read_bytes(), seeds.read_bytes()
  frame = pd.read_csv(csv)
  assert list(frame.columns) == COLUMNS
  # every method but those needing LoRA targets, which the tabular MLP lacks
  assert set(frame["method"]) == {n for n in METHODS.names() if not METHODS.get(n).needs_lora}
  assert "leaving out lora, levi_lora" in first.stderr
  assert set(frame["split"]) == {"test_id", "ood", "ood/x_only"}
  assert (frame["n_seeds"] == 2).all()
  assert frame["mean"].between(0, 100).all()
  assert "trained" in first.stdout
  second = _cli(*args)
  assert second.returncode == 0, second.stderr
  assert "components: 0 trained" in second.stdout
  assert csv.read_bytes() == csv1 and tex.read_bytes() == tex1
  assert seeds.read_bytes() == seeds1           # intervals and per-seed rows included
  assert len(list((tmp_path / "reports" / "synthetic_spurious").iterdir())) == 2
