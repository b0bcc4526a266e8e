"""Table 13 (App. E.3): ``amazon_reviews_text``, the review text as the large
model's input, on the same ratings and splits as ``amazon_reviews``; the plain
dataset never reads the texts; the text sample's own cache entry; Table 13's
layout; ``--table 13`` on the fixture."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from benchmark import paper_tables as PT
from benchmark.errors import DataError
from datasets import DATASETS
from datasets import amazon as A
from tests.harness import smoke_config
from tools import amazon_fixture as F

TEXT = "amazon_reviews_text"


@pytest.fixture(autouse=True)
def _no_shared_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("LEVI_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def rows():
  return F.ratings(seed=0, n_books=1200, per_product=80)


def _load(dataset, data_dir):
  return DATASETS.get(dataset).load(smoke_config(dataset), str(data_dir))


def _reviews(rows):
  """(customer, product, date, rating) -> the review sentence the fixture wrote."""
  return {(r["customer_id"], r["product_id"], r["date"], float(r["rating"])):
          f"{r['headline']}. {r['body']}" for r in rows}


def test_text_view_is_the_review_text_on_the_plain_splits(rows, tmp_path):
  """The large model reads the review headline and body; labels, small-model
  ids and every split are those of ``amazon_reviews``; TSV, 2018 JSON and
  TFDS agree."""
  F.write_tsv(tmp_path / "tsv", rows)
  F.write_json(tmp_path / "json", rows)
  F.write_tfds(tmp_path / "tfds", rows, tmp_path / "download")
  plain = _load(A.NAME, tmp_path / "tsv")
  text = _load(TEXT, tmp_path / "tsv")
  assert text.info.name == TEXT and text.info.extra["small_columns"] == list(A.SMALL_COLUMNS)
  assert text.info.small_spec == plain.info.small_spec
  assert list(text.ood) == list(plain.ood)
  splits = {"train": (plain.train, text.train), "val": (plain.val, text.val),
            "test_id": (plain.test_id, text.test_id),
            **{g: (plain.ood[g], text.ood[g]) for g in plain.ood}}
  for name, (p, t) in splits.items():
    np.testing.assert_array_equal(p.label, t.label, err_msg=name)
    np.testing.assert_array_equal(p.small["cat"], t.small["cat"], err_msg=name)
    assert not set(p.large["text"]) & set(t.large["text"]), name
  # Each sentence is its own rating's review: matched through the sample's rows.
  c = smoke_config(TEXT).data[TEXT]
  df, _ = A.load_rows(str(tmp_path / "tsv"), c, text=True, dataset=TEXT)
  want = _reviews(rows)
  got = A.review_sentences(df)
  for r, sentence in zip(df.itertuples(), got):
    assert sentence == want[(r.customer_id, r.product_id, r.date, float(r.rating))]
  assert set(text.train.large["text"]) <= set(got)
  # The headlines carry the star: the 5-star texts are never 1-star ones.
  five = {s for s, y in zip(text.train.large["text"], text.train.label) if y == 5}
  assert not any(s.startswith(("Terrible", "Waste of money")) for s in five)
  # The auxiliary task reads the same sentences.
  np.testing.assert_array_equal(text.aux["year"].train.large["text"], text.train.large["text"])
  # Amazon Review Data 2018 (summary, reviewText) and TFDS (data/review_headline,
  # data/review_body): the same splits and texts.
  for fmt in ("json", "tfds"):
    other = _load(TEXT, tmp_path / fmt)
    for name in ("train", "val", "test_id", *text.ood):
      got = other.ood[name] if name in text.ood else getattr(other, name)
      want_split = text.ood[name] if name in text.ood else getattr(text, name)
      np.testing.assert_array_equal(got.large["text"], want_split.large["text"],
                                    err_msg=f"{fmt} {name}")


def _drop_text_columns(path):
  """The TSV at ``path`` without its review_headline / review_body columns."""
  raw = path.read_bytes()
  gz = path.suffix == ".gz"
  lines = (gzip.decompress(raw) if gz else raw).decode().splitlines()
  drop = [lines[0].split("\t").index(c) for c in ("review_headline", "review_body")]
  kept = ["\t".join(f for i, f in enumerate(line.split("\t")) if i not in drop)
          for line in lines]
  data = ("\n".join(kept) + "\n").encode()
  path.write_bytes(gzip.compress(data) if gz else data)


def test_plain_dataset_never_reads_the_review_text(rows, tmp_path):
  """``amazon_reviews`` reads files without any review text column and keeps
  none in its sample or sentences; the text variant needs those columns."""
  F.write_tsv(tmp_path, rows, malformed=False)
  before = _load(A.NAME, tmp_path)
  phrases = [h for hs in F.HEADLINES.values() for h in hs]
  assert not any(p in s for s in before.train.large["text"] for p in phrases)
  for p in tmp_path.glob("amazon_reviews_us_*.tsv*"):
    _drop_text_columns(p)
  c = smoke_config(A.NAME).data[A.NAME]
  df, _ = A.load_rows(str(tmp_path), c)
  assert list(df.columns) == list(A.COLUMNS)
  after = _load(A.NAME, tmp_path)
  np.testing.assert_array_equal(after.train.large["text"], before.train.large["text"])
  with pytest.raises(DataError, match=r"missing column\(s\).*review_headline"):
    _load(TEXT, tmp_path)


def test_text_sample_has_its_own_cache_entry(rows, tmp_path, caplog):
  """The text sample is cached under its own key; an entry there without
  the texts (e.g. a plain sample) is rebuilt, never read as one."""
  F.write_tsv(tmp_path / "d", rows, malformed=False)
  folder = tmp_path / "cache" / "amazon"
  _load(A.NAME, tmp_path / "d")
  (plain_entry,) = folder.glob("*.json")
  first = _load(TEXT, tmp_path / "d")
  (text_entry,) = set(folder.glob("*.json")) - {plain_entry}
  assert b'"body":[' in text_entry.read_bytes()
  assert b'"body":[' not in plain_entry.read_bytes()
  text_entry.write_bytes(plain_entry.read_bytes())
  with caplog.at_level("WARNING"):
    again = _load(TEXT, tmp_path / "d")
  assert "holds no sample of this layout" in caplog.text and "rebuilding it" in caplog.text
  np.testing.assert_array_equal(again.train.large["text"], first.train.large["text"])
  A.read_cache(text_entry, A.COLUMNS + A.TEXT_COLUMNS)


def test_table13_layout_is_the_papers():
  """App. E.3's Table 13: six rows, ID RMSE and OOD RMSE, on the text variant."""
  t = PT.TABLES[13]
  assert [m for m, _ in t.rows] == ["ft", "ht", "lp", "fs", "ft_robust", "levi"]
  assert t.extra_rows == () and t.datasets() == [TEXT]
  assert [(c.split, c.header) for c in t.cols] == [("test_id", "ID RMSE"),
                                                   ("ood/time", "OOD RMSE")]
  assert 13 in PT.NUMBERS
  recs = [{"dataset": TEXT, "method": m, "seed": 0, "status": "ok", "metric": "rmse",
           "scores": {"test_id": 0.6 + i / 10, "ood/time": 0.7 + i / 10,
                      **{f"ood/product/{p}": 1.0 for p in A.PRODUCTS}},
           "n_examples": {"test_id": 50, "ood/time": 50,
                          **{f"ood/product/{p}": 50 for p in A.PRODUCTS}}}
          for i, m in enumerate(t.methods)]
  f = PT.frame(t, recs, {})
  assert list(f["row"].unique()) == [label for _, label in t.rows]
  assert f.groupby("column")["mean"].count().to_dict() == {"ID RMSE": 6, "OOD RMSE": 6}
  tex = PT.to_latex(t, f, "Table 13.")
  assert "Method & ID RMSE & OOD RMSE" in tex and r"\multicolumn{2}{c}{Amazon Review}" in tex
  assert r"\textbf{0.600}" in tex and r"\underline{0.800}" in tex   # FT best here, HT second


def test_cli_table13_dry_run_on_the_fixture(rows, run_cli, tmp_path):
  """``--table 13`` finds the text variant's files and plans its rows."""
  F.write_tsv(tmp_path / "data", rows)
  r = run_cli(["--table", "13", "--seeds", "0", "--data_dir", f"{TEXT}={tmp_path / 'data'}",
               "--dry_run"], tmp_path / "wd", env={"LEVI_CACHE": str(tmp_path / "cache")})
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"{TEXT} (backbone minilm_l6, preset smoke)" in r.stdout
  for kind in ("ft", "ht", "lp", "fs", "levi_light"):
    assert f"  {kind} " in r.stdout, r.stdout


@pytest.mark.slow
def test_cli_table13_end_to_end(rows, run_cli, tmp_path):
  """The acceptance run (smoke, one seed, smaller caps): every cell of Table
  13 filled, in the paper's layout."""
  F.write_tsv(tmp_path / "data", rows)
  d = f"data.{TEXT}"
  r = run_cli(["--table", "13", "--seeds", "0", "--data_dir", str(tmp_path / "data"),
               f"--config.{d}.max_train=100", f"--config.{d}.max_eval=30",
               f"--config.{d}.max_test=30", "--config.backbones.minilm_l6.max_len=24"],
              tmp_path / "wd", env={"LEVI_CACHE": str(tmp_path / "cache")}, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  wd = tmp_path / "wd"
  f = pd.read_csv(wd / "tables" / "table13.csv")
  assert len(f) == 12 and f["mean"].between(0.1, 3.0).all(), f
  assert list(f["split"].unique()) == ["test_id", "ood/time"]
  rows_ = [m for m, _ in PT.TABLES[13].rows]
  assert list(dict.fromkeys(f["method"])) == rows_ and (f["n_seeds"] == 1).all()
  # Each cell is its method record's score on that split.
  recs = {}
  for p in (wd / "runs" / "methods" / TEXT).rglob("*.json"):
    rec = json.loads(p.read_text())
    recs[rec["method"]] = rec
  for row in f.itertuples():
    assert row.mean == pytest.approx(recs[row.method]["scores"][row.split], abs=1e-6), (
        row.method, row.split)
  tex = (wd / "tables" / "table13.tex").read_text()
  assert "Method & ID RMSE & OOD RMSE" in tex and "n/a" not in tex
  # Bold: in each column the best row and those not significantly worse.
  assert tex.count(r"\textbf{") == int(f["bold"].sum()) >= 2
  hp = json.loads((wd / "tables" / "table13.hparams.json").read_text())[TEXT]
  assert hp["backbone"] == "minilm_l6" and hp["seeds"] == [0] and hp["preset"] == "smoke"
  assert set(hp["methods"]) == set(rows_) and hp["grids"] == {}
  light = hp["methods"]["levi"]["levi_light"]
  assert light["chosen_by"] == "config" and light["kind"] == "levi_light"
  assert light["lr"] == pytest.approx(json.loads(next(
      (wd / "runs" / "components" / "levi_light").glob("*.json")).read_text())["config"]["lr"])
