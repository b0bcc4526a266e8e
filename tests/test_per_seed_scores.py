"""What the intervals and the ``<table>.seeds.csv`` are built from: the
per-example values and point predictions kept beside each method record
(``benchmark.metrics``), and the per-seed frame of a table
(``tables.seeds_frame``): its columns, its row order whatever the record
order, its derived splits, and the failed runs it keeps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark import metrics, tables
from benchmark.data import CLASSIFICATION, REGRESSION
from tests.test_tables import N_EXAMPLES, SCORES, make_records


# -- metrics: point predictions, per-example values, the last step -------------------
def test_point_predictions_of_a_regression_are_float32_one_per_example():
  got = metrics.point_predictions(REGRESSION, np.array([[1.5], [-2.0], [0.25]], np.float64))
  assert got.dtype == np.float32 and got.shape == (3,)
  np.testing.assert_array_equal(got, [1.5, -2.0, 0.25])


def test_point_predictions_of_a_classification_are_the_argmax_class():
  logits = np.array([[0.1, 3.0, 0.2, 0.0], [2.0, 0.0, 0.0, 5.0], [0.0, 0.0, 1.0, 0.5]])
  got = metrics.point_predictions(CLASSIFICATION, logits)
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, [1, 3, 2])
  # Among a subset of classes (an OOD split of fewer classes): the best of
  # those, as that class's own index, not its position in the subset.
  got = metrics.point_predictions(CLASSIFICATION, logits, classes=[0, 2])
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, [2, 0, 2])


def test_per_example_values_and_finish_give_the_splits_score():
  point, label = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
  sq = metrics.per_example("rmse", point, label)
  assert sq.dtype == np.float64
  np.testing.assert_array_equal(sq, [1.0, 0.0, 9.0])
  assert metrics.finish("rmse", sq.mean()) == pytest.approx(np.sqrt(10 / 3))
  # float32 inputs: the squares are taken in float64 (no float32 rounding).
  a = np.float32(0.1)
  assert metrics.per_example("rmse", np.array([a]), np.array([np.float32(0)]))[0] == \
      float(a) ** 2
  correct = metrics.per_example("accuracy", np.array([1, 2, 3, 0]), np.array([1, 0, 3, 3]))
  assert correct.dtype == np.float64
  np.testing.assert_array_equal(correct, [100.0, 0.0, 100.0, 0.0])
  assert metrics.finish("accuracy", correct.mean()) == 50.0


# -- the per-seed frame -----------------------------------------------------------------
def _records_with_a_failure():
  """ft and levi records out of seed order, a failed fs run between them."""
  recs = make_records()   # ft s1, ft s0, levi s1, levi s0
  for r in recs:
    r["key"] = f"{r['method']}{r['seed']}"
  failed = {"dataset": "toy", "method": "fs", "seed": 0, "status": "failed",
            "metric": "rmse", "key": "fs0"}
  return [*recs[:2], failed, *recs[2:]]


def _expected_rows(method, seed):
  sc, n = SCORES[(method, seed)], N_EXAMPLES
  g = [sc["ood/g1"], sc["ood/g2"]]
  weighted = np.sqrt((n["ood/g1"] * g[0] ** 2 + n["ood/g2"] * g[1] ** 2) / 70)
  return [("ood", np.mean(g), 70), ("ood/g1", g[0], 30), ("ood/g2", g[1], 40),
          ("ood:weighted", weighted, 70), ("ood:worst", max(g), 70),
          ("test_id", sc["test_id"], 20), ("val", sc["val"], 10)]


def test_seeds_frame_is_one_row_per_method_split_and_seed_in_a_fixed_order():
  got = tables.seeds_frame(_records_with_a_failure())
  rows = []
  for method in ("ft", "levi"):   # methods as first given, then split, then seed
    for split, *_ in _expected_rows(method, 0):
      for seed in (0, 1):
        _, value, n = dict((s, (s, v, k)) for s, v, k in _expected_rows(method, seed))[split]
        rows.append(("toy", method, split, seed, "rmse", value, n, "ok", f"{method}{seed}"))
    if method == "ft":  # the failed run: kept, where its record came
      rows.append(("toy", "fs", "", 0, "rmse", np.nan, 0, "failed", "fs0"))
  want = pd.DataFrame(rows, columns=["dataset", "method", "split", "seed", "metric", "value",
                                     "n_examples", "status", "key"])
  # Methods keep their first-seen order (ft, fs, levi), not alphabetical.
  assert list(dict.fromkeys(got["method"])) == ["ft", "fs", "levi"]
  got_sorted = got.set_index(["method", "split", "seed"]).loc[
      [tuple(r[1:4]) for r in rows]].reset_index()[want.columns]
  pd.testing.assert_frame_equal(got_sorted, want, check_dtype=False)
  assert list(got.columns) == list(want.columns)
  assert list(got.index) == list(range(len(want)))
  # The order itself: within a method, splits sorted, seeds ascending.
  ft = got[got["method"] == "ft"]
  assert list(ft["split"]) == sorted(ft["split"], key=str) and list(ft["seed"]) == [0, 1] * 7


def test_seeds_frame_order_does_not_depend_on_the_record_order():
  recs = _records_with_a_failure()
  a = tables.seeds_frame(recs)
  b = tables.seeds_frame([recs[1], recs[0], recs[2], recs[4], recs[3]])
  pd.testing.assert_frame_equal(a, b)


def test_seeds_frame_passes_exclusions_and_the_group_size_to_the_aggregates():
  def ood(frame):
    row = frame[(frame["method"] == "ft") & (frame["seed"] == 0) & (frame["split"] == "ood")]
    return float(row["value"].item()), int(row["n_examples"].item())
  assert ood(tables.seeds_frame(make_records())) == (1.5, 70)
  assert ood(tables.seeds_frame(make_records(), exclude=("ood/g2",))) == (1.0, 30)
  assert ood(tables.seeds_frame(make_records(), min_group_size=35)) == (2.0, 40)
  assert ood(tables.seeds_frame(make_records(), min_group_size=30)) == (1.5, 70)


# -- the long table: what the comparison, the notes and the method order add ------
CMP_COLUMNS = ["ci_low", "ci_high", "reference", "diff_ref", "diff_ref_low", "diff_ref_high",
               "ref_significant", "bold"]


def test_dataset_frame_takes_intervals_differences_and_bold_from_the_comparison():
  comparison = pd.DataFrame([
      {"dataset": "toy", "method": "levi", "split": "ood", "ci_low": 0.8, "ci_high": 1.4,
       "reference": "ft", "diff_ref": -0.5, "diff_ref_low": -0.7, "diff_ref_high": -0.3,
       "ref_significant": True, "bold": True},
      {"dataset": "toy", "method": "ft", "split": "test_id", "ci_low": 0.4, "ci_high": 0.8,
       "reference": "ft", "diff_ref": 0.0, "diff_ref_low": 0.0, "diff_ref_high": 0.0,
       "ref_significant": False, "bold": True},
      {"dataset": "other", "method": "levi", "split": "test_id", "ci_low": 9.0, "ci_high": 9.5,
       "reference": "ft", "diff_ref": 9.0, "diff_ref_low": 9.0, "diff_ref_high": 9.0,
       "ref_significant": True, "bold": True}])   # another dataset's: not used
  f = tables.dataset_frame(make_records(), ["ft", "levi"], comparison=comparison)
  assert list(f.columns) == tables.COLUMNS
  at = lambda m, s: f[(f["method"] == m) & (f["split"] == s)].iloc[0]
  for (m, s), want in (((("levi", "ood")), comparison.iloc[0]),
                       ((("ft", "test_id")), comparison.iloc[1])):
    row = at(m, s)
    for col in CMP_COLUMNS:
      assert row[col] == want[col], (m, s, col)
  blank = at("levi", "test_id")   # no comparison row: no interval, not bold
  assert np.isnan(blank[["ci_low", "ci_high", "diff_ref", "diff_ref_low",
                         "diff_ref_high"]].astype(float)).all()
  assert pd.isna(blank["reference"]) and not blank["ref_significant"] and not blank["bold"]
  assert f["mean"].notna().all()   # the means are the records', whatever the comparison


def test_dataset_frame_notes_small_groups_and_joins_every_note():
  f = tables.dataset_frame(make_records(), ["ft", "levi"], min_group_size=35,
                           notes={"": "all rows", "ood/g1": "hand-picked"},
                           method_notes={"levi": "ours"})
  note = lambda m, s: f[(f["method"] == m) & (f["split"] == s)]["note"].item()
  small = "fewer than 35 examples: not in the OOD aggregates"
  assert note("ft", "ood/g1") == f"all rows; hand-picked; {small}"
  assert note("levi", "ood/g1") == f"all rows; hand-picked; {small}; ours"
  assert note("ft", "ood/g2") == "all rows" and note("levi", "test_id") == "all rows; ours"
  # g1 is out of the aggregate: OOD is g2 alone, over g2's examples.
  ood = f[(f["method"] == "ft") & (f["split"] == "ood")].iloc[0]
  assert ood["mean"] == pytest.approx(2.1) and ood["n_examples"] == 40
  assert tables.dataset_frame(make_records(), min_group_size=30)["note"].eq("").all()


def test_dataset_frame_puts_unlisted_methods_last_and_counts_missing_splits_as_empty():
  recs = make_records()
  recs.append({"dataset": "toy", "method": "fs", "seed": 0, "status": "ok", "metric": "rmse",
               "scores": {"val": 2.0, "test_id": 1.0}, "n_examples": {"val": 10, "test_id": 20}})
  f = tables.dataset_frame(recs, ["levi", "ft"])
  assert list(dict.fromkeys(f["method"])) == ["levi", "ft", "fs"]
  fs = f[f["method"] == "fs"].set_index("split")
  assert fs.loc["test_id", "mean"] == 1.0 and fs.loc["test_id", "n_seeds"] == 1
  # A split fs never scored: a row (the table's layout is every method's),
  # no value, no seeds, no examples.
  assert np.isnan(fs.loc["ood/g1", "mean"]) and fs.loc["ood/g1", "n_seeds"] == 0
  assert fs.loc["ood/g1", "n_examples"] == 0 and np.isnan(fs.loc["test_id", "std"])


def test_write_gives_the_csv_latex_and_seeds_files_in_their_formats(tmp_path):
  comparison = pd.DataFrame([
      {"dataset": "toy", "method": m, "split": "ood", "ci_low": lo, "ci_high": hi,
       "reference": "ft", "diff_ref": d, "diff_ref_low": d, "diff_ref_high": d,
       "ref_significant": m == "levi", "bold": m == "levi"}
      for m, lo, hi, d in (("ft", 1.2, 1.9, 0.0), ("levi", 0.8, 1.4, -0.5))])
  f = tables.dataset_frame(make_records(), ["ft", "levi"], comparison=comparison,
                           notes={"ood/g1": "a_b"})
  seeds = tables.seeds_frame(_records_with_a_failure())
  paths = tables.write(f, tmp_path / "toy", {"ft": "FT", "levi": "LEVI"}, "Cap", "tab:toy",
                       {"rmse": 2}, seeds=seeds)
  assert [p.name for p in paths] == ["toy.csv", "toy.tex", "toy.seeds.csv"]
  csv, tex, seeds_csv = (p.read_bytes().decode() for p in paths)
  # CSVs: no index column, "\n" line ends, six decimals, blanks for NaN.
  for text, frame in ((csv, f), (seeds_csv, seeds)):
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == ",".join(frame.columns) and len(lines) == len(frame) + 1
  assert csv.splitlines()[1] == ("toy,ft,test_id,rmse,0.600000,0.141421,,,2,20,,,,,"
                                 "False,False,")
  assert "toy,levi,ood,rmse,1.150000,0.353553,0.800000,1.400000,2,70,ft,-0.500000," \
         "-0.500000,-0.500000,True,True," in csv
  assert seeds_csv.splitlines()[1] == "toy,ft,ood,0,rmse,1.500000,70,ok,ft0"
  assert seeds_csv.splitlines()[-1] == "toy,levi,val,1,rmse,1.100000,10,ok,levi1"
  assert "toy,fs,,0,rmse,,0,failed,fs0" in seeds_csv
  # LaTeX: the label, two decimals (the override), intervals where the
  # comparison has them, bold from it, the notes after the tabular.
  assert "\\label{tab:toy}" in tex and "\\caption{Cap}" in tex
  assert "FT & \\textbf{0.60 $\\pm$ 0.14} & 1.65 [1.20, 1.90] &" in tex
  assert "LEVI & \\underline{0.70 $\\pm$ 0.14} & \\textbf{1.15 [0.80, 1.40]} &" in tex
  assert tex.endswith("\\end{tabular}\n\\par\\smallskip{\\footnotesize Notes: a\\_b.}\n"
                      "\\end{table}\n")
  # Without seeds: the two files, and no seeds file left from nothing.
  assert [p.name for p in tables.write(f, tmp_path / "two")] == ["two.csv", "two.tex"]
  assert not (tmp_path / "two.seeds.csv").exists()
  assert "\\label" not in (tmp_path / "two.tex").read_text()
  assert "1.650 [1.200, 1.900]" in (tmp_path / "two.tex").read_text()  # rmse's 3 by default
