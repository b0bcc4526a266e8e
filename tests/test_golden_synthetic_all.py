"""The synthetic benchmark's ``--method all`` table (cpu preset, seeds 0-2),
pinned before the component-kind refactor: every existing row's numbers stay
what they were. The golden file is the CSV that command wrote at commit
time (``python -m tools.regen_golden --only synthetic_all_cpu``); methods
added since (``NEWER``) are left out of the comparison."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden" / "synthetic_all_cpu.csv"
NEWER = ("l2sp", "surgical", "levi_batchensemble")
ARGS = ["--method", "all", "--dataset", "synthetic_spurious", "--seeds", "0,1,2",
        "--preset", "cpu"]


@pytest.mark.slow
def test_synthetic_method_all_table_is_unchanged(run_cli, tmp_path):
  r = run_cli(ARGS, tmp_path, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  got = pd.read_csv(tmp_path / "tables" / "synthetic_spurious.csv", dtype=str)
  got = got[~got["method"].isin(NEWER)].reset_index(drop=True)
  want = pd.read_csv(GOLDEN, dtype=str)
  pd.testing.assert_frame_equal(got[list(want.columns)], want)
