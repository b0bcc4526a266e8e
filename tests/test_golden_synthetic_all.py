"""The synthetic benchmark's ``--method all`` table (cpu preset, seeds 0-2),
pinned before the component-kind refactor: every existing row's numbers stay
what they were. The golden file is the CSV that command wrote at commit
time (``python -m tools.regen_golden --only synthetic_all_cpu``); methods
added since (``NEWER``) are left out of the comparison.

The labels and counts must match exactly; each accuracy's mean and std may
move by at most one test example per seed. XLA's CPU kernels differ with the
instruction set (AVX-512 or AVX2 only: other vector widths, other summation
orders), so a logit that sits on the decision boundary can land on the other
side on another machine: on a 2-core AMD VM without AVX-512 one example of
2,000 flips for levi_pretrained and a3 in one seed. Any real change to a
method moves far more than that."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden" / "synthetic_all_cpu.csv"
NEWER = ("l2sp", "surgical", "levi_batchensemble")
ARGS = ["--method", "all", "--dataset", "synthetic_spurious", "--seeds", "0,1,2",
        "--preset", "cpu"]
EXACT = ("dataset", "method", "split", "metric", "n_seeds", "n_examples")


def table_differences(got: pd.DataFrame, want: pd.DataFrame) -> list[str]:
  """What differs between two tables beyond one example per seed (empty when
  they agree): label and count columns exactly; an accuracy (in percent)
  moves by 100/n_examples in one seed when one example flips, which shifts the
  mean by that over n_seeds and the sample std by at most that over
  sqrt(n_seeds - 1), so one flip per seed allows 100/n_examples on the mean and
  100/n_examples * sqrt(n_seeds/(n_seeds - 1)) on the std."""
  if len(got) != len(want):
    return [f"{len(got)} rows, golden has {len(want)}"]
  problems = []
  for col in EXACT:
    for i in np.flatnonzero(got[col].astype(str).values != want[col].astype(str).values):
      problems.append(f"row {i} {col}: {got[col].iloc[i]!r} != golden {want[col].iloc[i]!r}")
  if problems:
    return problems
  for i, (g, w) in enumerate(zip(got.itertuples(), want.itertuples())):
    step = 100.0 / int(w.n_examples)
    seeds = int(w.n_seeds)
    tol = {"mean": step,
           "std": step * math.sqrt(seeds / (seeds - 1)) if seeds > 1 else 0.0}
    for col, allowed in tol.items():
      a, b = float(getattr(g, col)), float(getattr(w, col))
      if abs(a - b) > allowed + 1e-6:  # the CSV's 6 decimals
        problems.append(f"{w.method}/{w.split} {col}: {a} vs golden {b} "
                        f"(more than one example per seed: {allowed:.4f})")
  return problems


def test_table_differences_allow_one_example_per_seed_and_no_more():
  want = pd.read_csv(GOLDEN, dtype=str)
  assert table_differences(want.copy(), want) == []
  step = 100.0 / int(want["n_examples"].iloc[0])
  seeds = int(want["n_seeds"].iloc[0])
  one_flip = want.copy()
  one_flip.loc[3, "mean"] = str(float(want["mean"].iloc[3]) + step / seeds)
  assert table_differences(one_flip, want) == []
  moved = want.copy()
  moved.loc[3, "mean"] = str(float(want["mean"].iloc[3]) + 2 * step)
  assert len(table_differences(moved, want)) == 1
  wider = want.copy()
  wider.loc[5, "std"] = str(float(want["std"].iloc[5]) + 2 * step)
  assert len(table_differences(wider, want)) == 1
  renamed = want.copy()
  renamed.loc[0, "method"] = "lp"
  assert table_differences(renamed, want) == [
      f"row 0 method: 'lp' != golden {want['method'].iloc[0]!r}"]
  assert table_differences(want.iloc[:-1], want) == [
      f"{len(want) - 1} rows, golden has {len(want)}"]


@pytest.mark.slow
def test_synthetic_method_all_table_is_unchanged(run_cli, tmp_path):
  r = run_cli(ARGS, tmp_path, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  got = pd.read_csv(tmp_path / "tables" / "synthetic_spurious.csv", dtype=str)
  got = got[~got["method"].isin(NEWER)].reset_index(drop=True)
  want = pd.read_csv(GOLDEN, dtype=str)
  assert table_differences(got[list(want.columns)], want) == []
