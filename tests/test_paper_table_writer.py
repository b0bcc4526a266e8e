"""The paper-layout table writer (``--table N``) against golden files, from
fixed records; and its cells by computation.

The golden files (a CSV and a LaTeX file for every paper table, from the
toy stores of ``tests/golden_records.py``) are written only by
``python -m tools.regen_golden`` after an intended format change: the test
compares, it never writes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import paper_tables as PT

GOLDEN = Path(__file__).parent / "golden"
GENRES = PT.GENRES_1 + PT.GENRES_2


def records():
  """MovieLens records for Table 5's rows, two seeds; method i's seed s has
  test_id 1 + i/100 + s/1000 and genre g's OOD score 1.2 + i/100 + g/1000."""
  out = []
  for i, (m, _) in enumerate(PT.TABLES[5].rows):
    for s in (1, 0):  # out of order on purpose
      if m == "a3" and s == 1:
        continue      # one seed only: no std
      scores = {"val": 1.0, "test_id": 1 + i / 100 + s / 1000}
      scores.update({f"ood/{g}": 1.2 + i / 100 + j / 1000 - s / 1000
                     for j, g in enumerate(GENRES)})
      out.append({"dataset": PT.ML, "method": m, "seed": s, "status": "ok", "metric": "rmse",
                  "scores": scores, "n_examples": {"test_id": 9114,
                                                   **{f"ood/{g}": 100 for g in GENRES}}})
  out.append({"dataset": PT.ML, "method": "a2", "seed": 2, "status": "failed",
              "reason": "loss became nan at step 3", "metric": "rmse", "n_examples": {}})
  return out


@pytest.fixture
def frame():
  recs = [r for r in records() if not (r["method"] == "a2" and r["status"] == "ok")]
  return PT.frame(PT.TABLES[5], recs, {PT.AZ: "no data (place the files under --data_dir)"})


@pytest.mark.parametrize("number", sorted(PT.TABLES))
def test_golden_csv_and_latex(number, tmp_path):
  from tests.golden_records import write_table
  csv, tex = write_table(number, tmp_path)
  for got, name in ((csv, f"table{number}.csv"), (tex, f"table{number}.tex")):
    gold = GOLDEN / name
    assert gold.exists(), f"{gold} missing: python -m tools.regen_golden --only table{number}"
    assert got.read_bytes() == gold.read_bytes(), name


def test_golden_files_are_written_only_by_the_tool():
  """No test writes a golden file: an update flag left set in a shell used
  to rewrite the golden and compare it with itself."""
  flag = "UPDATE" + "_GOLDEN"
  for p in Path(__file__).parent.glob("*.py"):
    assert flag not in p.read_text(), p.name
  assert sorted(p.name for p in GOLDEN.glob("table*.csv")) == sorted(
      f"table{n}.csv" for n in PT.TABLES)


def test_cells_by_computation(frame):
  cell = lambda m, col: frame[(frame.method == m) & (frame.column == col)
                              & (frame.group == "MovieLens")].iloc[0]
  ft = cell("ft", "OOD RMSE")  # mean over the 12 genres, then over seeds
  per_seed = [np.mean([1.2 + j / 1000 - s / 1000 for j in range(12)]) for s in (0, 1)]
  assert ft["mean"] == pytest.approx(np.mean(per_seed))
  assert ft["std"] == pytest.approx(np.std(per_seed, ddof=1))
  assert ft["n_seeds"] == 2 and ft["n_examples"] == 1200
  a3 = cell("a3", "ID RMSE")
  assert a3["n_seeds"] == 1 and np.isnan(a3["std"])
  a2 = cell("a2", "ID RMSE")
  assert np.isnan(a2["mean"]) and a2["note"].startswith("failed")
  az = frame[frame.dataset == PT.AZ]
  assert az["mean"].isna().all() and (az["note"] == "no data (place the files under --data_dir)").all()


def test_best_bold_second_underlined(frame):
  tex = PT.to_latex(PT.TABLES[5], frame, "c")
  # Lower RMSE is better: "Fine-tuning" (i = 0) has the lowest ID and OOD.
  ft_line = next(l for l in tex.splitlines() if l.startswith("Fine-tuning"))
  assert ft_line.count(r"\textbf") == 2
  a1_line = next(l for l in tex.splitlines() if l.startswith("A1)"))
  assert a1_line.count(r"\underline") == 2
  a2_line = next(l for l in tex.splitlines() if l.startswith("A2)"))
  assert "failed" in a2_line


def test_paper_ood_is_mean_of_genre_tables():
  """Table 1's MovieLens OOD is the unweighted mean of Tables 9-10's genres
  (checked on the paper's numbers in test_paper_tables); the frame uses the
  same rule for records."""
  rec = {"scores": {f"ood/{g}": float(k) for k, g in enumerate(GENRES)}}
  assert PT.split_values(rec, "ood") == pytest.approx(5.5)
  rec = {"scores": {"ood/time": 9.0, **{f"ood/product/{p}": 1.0 for p in PT.PRODUCTS}}}
  assert PT.split_values(rec, "ood/products") == 1.0


def test_weight_averaging_rows_below_the_papers_and_na_where_they_cannot_run(tmp_path):
  t = PT.TABLES[1]
  assert [m for m, _ in t.rows] == [m for m, _ in PT.MAIN_ROWS]   # the paper's rows first
  assert [m for m, _ in t.extra_rows] == ["soup_uniform", "soup_greedy", "ratatouille",
                                          "ratatouille_greedy"]
  recs = [{"dataset": PT.ML, "method": m, "seed": 0, "status": "ok", "metric": "rmse",
           "scores": {"test_id": 1.0 + i / 10, "ood/War": 1.1 + i / 10},
           "n_examples": {"test_id": 10, "ood/War": 5}}
          for i, m in enumerate(["ft", "soup_uniform"])]
  f = PT.frame(t, recs, {}, {(PT.ML, "ratatouille"): "movielens_genre declares no "
                             "auxiliary tasks"})
  rat = f[(f.method == "ratatouille") & (f.dataset == PT.ML)]
  assert rat["mean"].isna().all() and rat["note"].str.contains("auxiliary").all()
  soup = f[(f.method == "soup_uniform") & (f.column == "ID")].iloc[0]
  assert soup["mean"] == pytest.approx(1.1) and soup["row"].endswith(PT.EXTRA_MARK)
  _, tex = PT.write(t, f, tmp_path, "Table 1. extras")
  lines = tex.read_text().splitlines()
  body = lines[lines.index(r"\midrule") + 1:]
  assert body[len(PT.MAIN_ROWS)] == r"\midrule"          # the rule before the extras
  assert body[len(PT.MAIN_ROWS) + 1].startswith(r"Uniform soup$^\dagger$ & ")
  assert any("not in the paper" in ln for ln in lines)
  bare = t.without_extras()
  assert bare.methods == [m for m, _ in PT.MAIN_ROWS]
  assert "not in the paper" not in PT.to_latex(bare, PT.frame(bare, recs, {}), "x")


CMP_COLUMNS = ["ci_low", "ci_high", "reference", "diff_ref", "diff_ref_low", "diff_ref_high",
               "ref_significant", "bold"]


def test_frame_takes_intervals_differences_and_bold_from_the_comparison():
  recs = [r for r in records() if r["status"] == "ok"]
  comparison = pd.DataFrame([
      {"dataset": PT.ML, "method": "levi", "split": "ood", "ci_low": 1.1, "ci_high": 1.3,
       "reference": "ft", "diff_ref": -0.06, "diff_ref_low": -0.08, "diff_ref_high": -0.04,
       "ref_significant": True, "bold": True},
      {"dataset": PT.ML, "method": "ft", "split": "test_id", "ci_low": 0.9, "ci_high": 1.1,
       "reference": "ft", "diff_ref": 0.0, "diff_ref_low": 0.0, "diff_ref_high": 0.0,
       "ref_significant": False, "bold": True},
      {"dataset": PT.AZ, "method": "levi", "split": "ood", "ci_low": 9.0, "ci_high": 9.5,
       "reference": "ft", "diff_ref": 9.0, "diff_ref_low": 9.0, "diff_ref_high": 9.0,
       "ref_significant": True, "bold": True}])   # a column Table 5 does not have
  f = PT.frame(PT.TABLES[5], recs, {}, comparison=comparison)
  assert list(f.columns) == PT.CSV_COLUMNS
  at = lambda m, s: f[(f["dataset"] == PT.ML) & (f["method"] == m) & (f["split"] == s)].iloc[0]
  for (m, s), want in ((("levi", "ood"), comparison.iloc[0]), (("ft", "test_id"),
                                                               comparison.iloc[1])):
    row = at(m, s)
    for col in CMP_COLUMNS:
      assert row[col] == want[col], (m, s, col)
  blank = at("levi", "test_id")   # no comparison row: no interval, not bold
  assert np.isnan(blank[["ci_low", "ci_high", "diff_ref", "diff_ref_low",
                         "diff_ref_high"]].astype(float)).all()
  assert pd.isna(blank["reference"]) and not blank["ref_significant"] and not blank["bold"]
  assert f["bold"].dtype == bool and f["ref_significant"].dtype == bool
  assert not f[f["dataset"] == PT.AZ]["bold"].any()


def test_frame_passes_each_datasets_exclusions_and_the_group_size():
  recs = [r for r in records() if r["status"] == "ok"]
  ood = lambda f: f[(f["dataset"] == PT.ML) & (f["method"] == "ft") & (f["split"] == "ood")
                    ].iloc[0]
  whole = ood(PT.frame(PT.TABLES[5], recs, {}))
  # ft (row 0), seeds 0 and 1: genre j scores 1.2 + j/1000 - s/1000.
  mean = lambda js: np.mean([np.mean([1.2 + j / 1000 - s / 1000 for j in js]) for s in (0, 1)])
  assert whole["mean"] == pytest.approx(mean(range(len(GENRES))))
  assert whole["n_examples"] == 100 * len(GENRES)
  cut = ood(PT.frame(PT.TABLES[5], recs, {}, exclude_of={PT.ML: [f"ood/{GENRES[0]}"]}))
  assert cut["mean"] == pytest.approx(mean(range(1, len(GENRES))))
  assert cut["n_examples"] == 100 * (len(GENRES) - 1)
  other = ood(PT.frame(PT.TABLES[5], recs, {}, exclude_of={PT.AZ: [f"ood/{GENRES[0]}"]}))
  assert other["mean"] == whole["mean"]
  # Every genre under the group size: no OOD aggregate, and the cell says so.
  none = ood(PT.frame(PT.TABLES[5], recs, {}, min_group_size=101))
  assert np.isnan(none["mean"]) and none["n_seeds"] == 0 and none["note"] == "no ood split"
  assert ood(PT.frame(PT.TABLES[5], recs, {}, min_group_size=100))["mean"] == whole["mean"]
