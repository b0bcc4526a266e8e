"""The table writer against golden files, and its arithmetic by computation.

The golden files are written only by ``python -m tools.regen_golden`` (after
an intended format change; then read the diff): the test compares.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import tables

GOLDEN = Path(__file__).parent / "golden"

N_EXAMPLES = {"val": 10, "test_id": 20, "ood/g1": 30, "ood/g2": 40}

# (method, seed) -> scores. Groups of unequal size, so the unweighted mean over
# groups (what the table reports) differs from the example-weighted mean.
SCORES = {
    ("ft", 0): {"val": 1.0, "test_id": 0.5, "ood/g1": 1.0, "ood/g2": 2.0},
    ("ft", 1): {"val": 1.2, "test_id": 0.7, "ood/g1": 1.4, "ood/g2": 2.2},
    ("levi", 0): {"val": 0.9, "test_id": 0.6, "ood/g1": 0.8, "ood/g2": 1.0},
    ("levi", 1): {"val": 1.1, "test_id": 0.8, "ood/g1": 1.2, "ood/g2": 1.6},
}

LABELS = {"ft": "Fine-tuning (FT)", "levi": "LEVI"}
CAPTION = "toy: rmse (lower is better), mean $\\pm$ std over seeds 0,1"


def make_records(scores=SCORES, dataset="toy", metric="rmse"):
  # Deliberately out of seed order: the frame must not depend on record order.
  recs = []
  for (m, s), sc in sorted(scores.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
    recs.append({"dataset": dataset, "method": m, "seed": s, "status": "ok",
                 "metric": metric, "scores": dict(sc), "n_examples": dict(N_EXAMPLES)})
  return recs


@pytest.fixture
def frame():
  return tables.dataset_frame(make_records(), ["ft", "levi"])


def test_golden_csv_and_latex(tmp_path):
  from tests.golden_records import write_toy
  csv_path, tex_path = write_toy(tmp_path)
  assert (csv_path.name, tex_path.name) == ("toy.csv", "toy.tex")
  assert csv_path.read_bytes() == (GOLDEN / "toy.csv").read_bytes()
  assert tex_path.read_bytes() == (GOLDEN / "toy.tex").read_bytes()


def test_frame_values(frame):
  assert list(frame.columns) == tables.COLUMNS
  assert list(frame["method"]) == ["ft"] * 6 + ["levi"] * 6
  assert list(frame["split"]) == ["test_id", "ood", "ood:weighted", "ood:worst", "ood/g1",
                                  "ood/g2"] * 2
  assert set(frame["metric"]) == {"rmse"} and set(frame["dataset"]) == {"toy"}
  assert set(frame["n_seeds"]) == {2}
  n = frame.set_index(["method", "split"])["n_examples"]
  assert n["ft", "test_id"] == 20 and n["ft", "ood/g1"] == 30 and n["ft", "ood/g2"] == 40
  assert n["ft", "ood"] == 70

  for m in ("ft", "levi"):
    rows = frame[frame["method"] == m].set_index("split")
    for split in ("test_id", "ood/g1", "ood/g2"):
      vals = [SCORES[m, s][split] for s in (0, 1)]
      assert rows.loc[split, "mean"] == pytest.approx(np.mean(vals))
      assert rows.loc[split, "std"] == pytest.approx(np.std(vals, ddof=1))
    # ood: per seed, the unweighted mean over the groups; then over seeds.
    per_seed = [np.mean([SCORES[m, s]["ood/g1"], SCORES[m, s]["ood/g2"]]) for s in (0, 1)]
    assert rows.loc["ood", "mean"] == pytest.approx(np.mean(per_seed))
    assert rows.loc["ood", "std"] == pytest.approx(np.std(per_seed, ddof=1))
    # ... which is not the example-weighted mean.
    weighted = np.mean([(30 * SCORES[m, s]["ood/g1"] + 40 * SCORES[m, s]["ood/g2"]) / 70
                        for s in (0, 1)])
    assert rows.loc["ood", "mean"] != pytest.approx(weighted)
    # The example-weighted RMSE pools the groups' squared errors; worst is the max.
    pooled = [np.sqrt((30 * SCORES[m, s]["ood/g1"] ** 2 + 40 * SCORES[m, s]["ood/g2"] ** 2)
                      / 70) for s in (0, 1)]
    assert rows.loc["ood:weighted", "mean"] == pytest.approx(np.mean(pooled))
    worst = [max(SCORES[m, s]["ood/g1"], SCORES[m, s]["ood/g2"]) for s in (0, 1)]
    assert rows.loc["ood:worst", "mean"] == pytest.approx(np.mean(worst))

  # By hand: ft ood = mean(1.5, 1.8) = 1.65, std = 0.3 / sqrt(2).
  ft = frame[frame["method"] == "ft"].set_index("split")
  assert ft.loc["ood", "mean"] == pytest.approx(1.65)
  assert ft.loc["ood", "std"] == pytest.approx(0.3 / np.sqrt(2))
  levi = frame[frame["method"] == "levi"].set_index("split")
  assert levi.loc["ood", "mean"] == pytest.approx(1.15)
  assert levi.loc["ood", "std"] == pytest.approx(0.5 / np.sqrt(2))


def test_frame_method_order_follows_argument():
  f = tables.dataset_frame(make_records(), ["levi", "ft"])
  assert list(dict.fromkeys(f["method"])) == ["levi", "ft"]


def test_one_seed_has_blank_std(tmp_path):
  recs = [r for r in make_records() if r["seed"] == 0]
  f = tables.dataset_frame(recs, ["ft", "levi"])
  assert f["std"].isna().all() and set(f["n_seeds"]) == {1}
  csv_path, _ = tables.write(f, tmp_path / "one")
  back = pd.read_csv(csv_path)
  assert back["std"].isna().all()
  assert "±" not in tables.wide(f).to_string()


def test_ranking_three_methods_lower_and_higher_is_better():
  three = dict(SCORES)
  three[("fs", 0)] = {"val": 5.0, "test_id": 5.0, "ood/g1": 5.0, "ood/g2": 5.0}
  three[("fs", 1)] = {"val": 6.0, "test_id": 6.0, "ood/g1": 6.0, "ood/g2": 6.0}
  order = ["ft", "levi", "fs"]

  rmse = tables._rank_styles(tables.dataset_frame(make_records(three), order))
  assert rmse.loc["ft", "test_id"].startswith("textbf")      # 0.6 < 0.7 < 5.5
  assert rmse.loc["levi", "test_id"].startswith("underline")
  assert rmse.loc["fs", "test_id"] == ""
  assert rmse.loc["levi", "ood"].startswith("textbf")        # 1.15 < 1.65 < 5.5
  assert rmse.loc["ft", "ood"].startswith("underline")

  acc = tables._rank_styles(tables.dataset_frame(make_records(three, metric="acc"), order))
  assert acc.loc["fs", "test_id"].startswith("textbf")       # higher is better
  assert acc.loc["levi", "test_id"].startswith("underline")
  assert acc.loc["ft", "test_id"] == ""


def _unescaped_underscores(tex: str) -> list[str]:
  """Lines of ``tex`` with a ``_`` outside math mode that is not ``\\_``
  (LaTeX stops there with 'Missing $ inserted')."""
  bad = []
  for line in tex.splitlines():
    text = re.sub(r"\$[^$]*\$", "", line)      # drop inline math
    if re.search(r"(?<!\\)_", text):
      bad.append(line)
  return bad


def test_latex_escapes_underscores_in_names():
  recs = make_records(dataset="my_data")
  for r in recs:
    r["method"] = {"ft": "lp_ft", "levi": "levi_light"}[r["method"]]
    r["scores"]["ood/x_only"] = r["scores"].pop("ood/g1")
    r["n_examples"]["ood/x_only"] = r["n_examples"].pop("ood/g1")
  tex = tables.to_latex(tables.dataset_frame(recs), caption="plain caption")
  assert _unescaped_underscores(tex) == [], tex


@pytest.mark.slow
def test_cli_table_is_valid_latex(run_cli, tmp_path):
  """End to end (one smoke run, one seed): the CLI's .tex must compile; the
  caption it builds names the dataset and backbone, which contain ``_``."""
  workdir = tmp_path / "wd"
  proc = run_cli(["--method", "ft", "--dataset", "synthetic_spurious", "--seeds", "0"],
                 workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  csv = pd.read_csv(workdir / "tables" / "synthetic_spurious.csv")
  assert list(csv["split"]) == ["test_id", "ood", "ood/x_only"]
  assert list(csv["n_seeds"]) == [1, 1, 1]
  assert csv.loc[1, "mean"] == pytest.approx(csv.loc[2, "mean"])   # one group: ood = it
  tex = (workdir / "tables" / "synthetic_spurious.tex").read_text()
  assert _unescaped_underscores(tex) == [], tex
