"""Traps in a user's CSV, each through the CLI: a warning line (or an error
naming the option) and the table's ``note``: a tiny OOD group (left out of
``ood``), a label value never in ID training, identical results across seeds,
and empty numeric cells (``--config.data.tabular.missing``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

TINY = ("OOD group 'tiny' has 1 row(s), fewer than data.tabular.min_ood_rows=20: left out "
        "of the ood mean (--config.data.tabular.min_ood_rows=0 keeps it)")
UNSEEN = ("label value '2' occurs in ood:big (10 row(s)) but never in the ID train rows: "
          "no model can learn it")
SAME = ("warning: lp: identical results for every seed (± 0.000); the ID training set (40 "
        "rows) fits in one batch (batch_size 100), so a seed can change only the "
        "initialisation: add training rows or lower --config.batch_size")


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
  rng = np.random.default_rng(0)
  rows = []

  def add(split, n, labels=(0, 1)):
    for i in range(n):
      y = labels[i % len(labels)]
      rows.append((rng.normal() + y, "abc"[i % 3], y, split))

  add("pretrain", 60)
  add("train", 40)
  add("val", 20)
  add("test_id", 20)
  add("ood:big", 30, labels=(0, 1, 2))   # label 2: never in train
  add("ood:tiny", 1)
  df = pd.DataFrame(rows, columns=["num_a", "cat_b", "label", "split"])
  folder = tmp_path_factory.mktemp("traps")
  df.to_csv(folder / "traps.csv", index=False)
  gaps = df.copy()
  gaps.loc[[65, 70], "num_a"] = np.nan   # two train rows (lines 67 and 72)
  gaps.to_csv(folder / "gaps.csv", index=False)
  return folder


def _messages(stderr: str) -> list[str]:
  return [l for l in stderr.splitlines() if l.startswith(("warning:", "error:"))]


def test_tiny_group_unseen_label_and_identical_seeds(run_cli, csvs, tmp_path):
  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "traps.csv",
               "--seeds", "0,1"], tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  msgs = _messages(r.stderr)
  assert f"warning: tabular: {UNSEEN}" in msgs
  assert f"warning: tabular: {TINY}" in msgs
  assert SAME in msgs
  t = pd.read_csv(tmp_path / "tables" / "tabular.csv", keep_default_na=False).set_index("split")
  assert t.loc["ood", "mean"] == t.loc["ood/big", "mean"]     # the 1-row group left out
  assert t.loc["ood", "n_examples"] == 30
  assert TINY in t.loc["ood/tiny", "note"] and UNSEEN in t.loc["ood/big", "note"]
  assert "not tiny" in t.loc["ood", "note"]
  assert all("identical across seeds" in n for n in t["note"])

  # min_ood_rows=0 and report.min_group_size=0 (the tables' own rule for groups
  # under 30 examples): every group weighs alike again, and nothing is said.
  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "traps.csv",
               "--seeds", "0,1", "--config.data.tabular.min_ood_rows=0",
               "--config.report.min_group_size=0"], tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  assert not any("OOD group" in m for m in _messages(r.stderr))
  t = pd.read_csv(tmp_path / "tables" / "tabular.csv").set_index("split")
  assert t.loc["ood", "mean"] == pytest.approx(
      (t.loc["ood/big", "mean"] + t.loc["ood/tiny", "mean"]) / 2)


def test_missing_numbers_error_names_the_option_then_mean_and_drop(run_cli, csvs, tmp_path):
  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "gaps.csv",
               "--seeds", "0"], tmp_path / "error")
  assert r.returncode == 2
  (line,) = _messages(r.stderr)
  assert line.startswith("error: ") and "num_a is empty on line 67" in line, line
  assert "--config.data.tabular.missing=drop" in line
  assert "--config.data.tabular.missing=mean" in line
  assert not (tmp_path / "error").exists()

  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "gaps.csv",
               "--seeds", "0", "--config.data.tabular.missing=mean"], tmp_path / "mean")
  assert r.returncode == 0, r.stderr[-3000:]
  want = ("2 empty num_* cell(s) in 2 row(s) filled with the ID train mean "
          "(data.tabular.missing=mean)")
  assert f"warning: tabular: {want}" in _messages(r.stderr)
  t = pd.read_csv(tmp_path / "mean" / "tables" / "tabular.csv")
  assert (t["note"].str.contains(want, regex=False)).all()

  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "gaps.csv",
               "--seeds", "0", "--config.data.tabular.missing=drop", "--dry_run"],
              tmp_path / "drop")
  assert r.returncode == 0, r.stderr[-3000:]
  assert ("warning: tabular: 2 row(s) with empty num_* cells left out "
          "(data.tabular.missing=drop)") in _messages(r.stderr)

  r = run_cli(["--method", "lp", "--dataset", "tabular", "--data_dir", csvs / "gaps.csv",
               "--config.data.tabular.missing=zero"], tmp_path / "bad")
  assert r.returncode == 2 and "use error, drop or mean" in r.stderr
