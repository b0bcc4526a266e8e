"""The fabricated stores the golden files are written from: the toy table
(``tests/test_tables.py``'s records), Table 5's records
(``tests/test_paper_table_writer.py``) and, for every other paper table, a
toy store built here. ``python -m tools.regen_golden`` writes the golden files
from these; the tests write them again into a temporary folder and compare:
they never write a golden file."""
from __future__ import annotations

from pathlib import Path

from benchmark import paper_tables as PT
from benchmark import tables

GOLDEN = Path(__file__).parent / "golden"

# Per dataset: its metric and its eval splits with (unequal) sizes, so that
# unweighted and example-weighted means over groups differ.
SPLITS = {
    PT.ML: ("rmse", {"test_id": 9114, **{f"ood/{g}": 50 + 13 * j for j, g in
                                        enumerate(PT.GENRES_1 + PT.GENRES_2)}}),
    PT.AZ: ("rmse", {"test_id": 5000, "ood/time": 4000,
                     **{f"ood/product/{p}": 100 + 37 * j for j, p in enumerate(PT.PRODUCTS)}}),
    PT.AZT: ("rmse", {"test_id": 5000, "ood/time": 4000,
                      **{f"ood/product/{p}": 100 + 37 * j for j, p in enumerate(PT.PRODUCTS)}}),
    PT.MED: ("accuracy", {"test_id": 800, "ood/low_quality": 300, "ood/ungradable": 120}),
    PT.IMN: ("accuracy", {"test_id": 1000, "ood/a": 200, "ood/r": 300, "ood/v2": 1000}),
}


def table_records(number: int) -> list[dict]:
  """A toy store for paper table ``number``: every row's method on every
  dataset, seeds 1 and 0 (out of order); method i, seed s, split j scores
  base + i/100 + j/1000 + s/300 (accuracy: 50 - ...), so each column has a
  strict best and second. The second row has one seed only (blank std); the
  third fails on its first dataset (a ``failed`` cell)."""
  if number == 5:
    from tests.test_paper_table_writer import records
    return records()
  t = PT.TABLES[number]
  out = []
  for d in t.datasets():
    metric, n = SPLITS[d]
    for i, m in enumerate(t.methods):
      for s in (1, 0):
        if i == 1 and s == 1:
          continue
        if i == 2 and d == t.datasets()[0]:
          if s == 0:
            out.append({"dataset": d, "method": m, "seed": 0, "status": "failed",
                        "reason": "loss became nan at step 3", "metric": metric,
                        "n_examples": {}})
          continue
        sign = 1.0 if metric == "rmse" else -1.0
        base = 1.0 if metric == "rmse" else 50.0
        scores = {"val": base}
        scores.update({k: base + sign * (i / 100 + j / 1000 + s / 300)
                       for j, k in enumerate(n)})
        out.append({"dataset": d, "method": m, "seed": s, "status": "ok", "metric": metric,
                    "scores": scores, "n_examples": dict(n)})
  return out


def table_notes(number: int) -> tuple[dict, dict]:
  """The notes a table is written with: Table 5 a dataset without data; the
  tables with weight-averaging rows, Model Ratatouille n/a on MovieLens."""
  if number == 5:
    return {PT.AZ: "no data (place the files under --data_dir)"}, {}
  t = PT.TABLES[number]
  method_notes = {}
  if "ratatouille" in t.methods and PT.ML in t.datasets():
    method_notes[(PT.ML, "ratatouille")] = "movielens_genre declares no auxiliary tasks"
  return {}, method_notes


def write_table(number: int, outdir: Path) -> tuple[Path, Path]:
  t = PT.TABLES[number]
  recs = table_records(number)
  if number == 5:
    recs = [r for r in recs if not (r["method"] == "a2" and r["status"] == "ok")]
  else:
    drop = {m for (_, m) in table_notes(number)[1]}
    recs = [r for r in recs if not (r["method"] in drop and r["dataset"] == PT.ML)]
  notes, method_notes = table_notes(number)
  f = PT.frame(t, recs, notes, method_notes)
  return PT.write(t, f, outdir, f"Table {number}. golden")


def write_toy(outdir: Path) -> tuple[Path, Path]:
  from tests.test_tables import CAPTION, LABELS, make_records
  frame = tables.dataset_frame(make_records(), ["ft", "levi"])
  return tables.write(frame, outdir / "toy", LABELS, CAPTION)


def table_numbers() -> list[int]:
  return sorted(PT.TABLES)
