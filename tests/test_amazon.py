"""Amazon Review (time and product shifts): the splits from every source
format, on fixtures written here in each exact on-disk format; seeded,
order-independent sampling; the `ood/products` aggregate on the paper's own
numbers; bad input."""
from __future__ import annotations

import gzip
import random

import numpy as np
import pytest

from benchmark import paper_tables, tables
from benchmark.errors import DataError, UserError
from datasets import amazon as A
from tests.harness import smoke_config
from tools import amazon_fixture as F

GROUPS = [A.BOOKS, *A.PRODUCTS]


@pytest.fixture(autouse=True)
def _no_shared_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("LEVI_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def rows():
  return F.ratings(seed=0, n_books=1200, per_product=80)


def _cfg(**kw):
  return smoke_config("amazon_reviews", **{f"data.amazon_reviews.{k}": v for k, v in kw.items()}
                      ).data.amazon_reviews


def _splits(data_dir, c=None):
  c = c or _cfg()
  df, stats = A.load_rows(str(data_dir), c)
  return A.to_splits(df, stats, c), df, stats


def assert_same_splits(a, b):
  for name in ("train", "val", "test_id"):
    x, y = getattr(a, name), getattr(b, name)
    np.testing.assert_array_equal(x.large["text"], y.large["text"], err_msg=name)
    np.testing.assert_array_equal(x.small["cat"], y.small["cat"], err_msg=name)
    np.testing.assert_array_equal(x.label, y.label, err_msg=name)
  assert list(a.ood) == list(b.ood)
  for g in a.ood:
    np.testing.assert_array_equal(a.ood[g].large["text"], b.ood[g].large["text"], err_msg=g)
    np.testing.assert_array_equal(a.ood[g].label, b.ood[g].label, err_msg=g)
  assert a.info.small_spec == b.info.small_spec


def test_every_source_format_gives_the_same_splits(rows, tmp_path):
  """TSV (plain and gzipped, one malformed row), Amazon Review Data 2018 JSON
  lines (with the 2018 name Toys_and_Games) and a TFDS data dir prepared by
  TFDS's own builder: identical content, identical splits."""
  F.write_tsv(tmp_path / "tsv", rows)
  F.write_json(tmp_path / "json", rows)
  F.write_tfds(tmp_path / "tfds", rows, tmp_path / "download")
  tsv, df, stats = _splits(tmp_path / "tsv")
  assert stats["skipped"][A.BOOKS] == 1   # the row cut short: skipped and counted
  assert "line 13" in stats["first_skipped"][A.BOOKS]
  for other in ("json", "tfds"):
    s, _, st = _splits(tmp_path / other)
    assert_same_splits(tsv, s)
    assert st["id_years"] == stats["id_years"] == [1995, 1996, 1997, 1998]
    assert st["time_year"] == 2002
  # The splits are what the paper describes.
  # ID is split 80/10/10, each part capped (smoke: 200 / 100 / 50).
  n_id = stats["n_id"]
  assert 500 < n_id < 1000
  assert (len(tsv.train), len(tsv.val), len(tsv.test_id)) == (200, round(0.1 * n_id), 50)
  assert list(tsv.ood) == ["time", *[f"product/{p}" for p in A.PRODUCTS]]
  assert all(len(s) == 50 for s in tsv.ood.values())
  years = df.assign(year=df["date"].str[:4].astype(int))
  assert years[years["group"].isin(["train", "val", "test_id"])]["year"].between(1995, 1998).all()
  assert (years[years["group"] == "time"]["year"] == 2002).all()
  ids = df[df["group"].isin(["train", "val", "test_id"])]["key"]
  assert ids.is_unique   # train, val and test_id never share a rating
  assert set(tsv.train.label) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  # The text view never holds the review text or headline; the small view is
  # customer id and product id, unseen ids in the out-of-vocabulary bucket 0.
  assert "review" not in " ".join(tsv.train.large["text"][:20]).replace("customer rating", "")
  assert tsv.info.extra["small_columns"] == ["customer_id", "product_id"]
  for g in A.PRODUCTS:  # other categories' products never occur in Books training
    assert (tsv.ood[f"product/{g}"].small["cat"][:, 1] == 0).all()
  assert (tsv.train.small["cat"] > 0).all()


def test_sampling_is_seeded_order_free_and_nested(rows, tmp_path):
  shuffled = list(rows)
  random.Random(1).shuffle(shuffled)
  F.write_tsv(tmp_path / "a", rows, malformed=False)
  F.write_tsv(tmp_path / "b", shuffled, malformed=False)
  a, _, _ = _splits(tmp_path / "a")
  b, _, _ = _splits(tmp_path / "b")
  assert_same_splits(a, b)   # file order does not matter
  big, _, _ = _splits(tmp_path / "a", _cfg(max_train=400, max_eval=70))
  # Same caps for val/test: same rows; a larger cap extends train and OOD.
  np.testing.assert_array_equal(big.val.large["text"], a.val.large["text"])
  np.testing.assert_array_equal(big.train.large["text"][:200], a.train.large["text"])
  np.testing.assert_array_equal(big.ood["time"].large["text"][:50], a.ood["time"].large["text"])
  other, _, _ = _splits(tmp_path / "a", _cfg(split_seed=1))
  assert not np.array_equal(other.val.large["text"], a.val.large["text"])


def test_uncapped_split_is_80_10_10(rows, tmp_path):
  F.write_tsv(tmp_path / "t", rows, malformed=False)
  s, _, stats = _splits(tmp_path / "t", _cfg(max_train=0, max_val=0, max_test=0, max_eval=0))
  n = len(s.train) + len(s.val) + len(s.test_id)
  assert n == stats["n_id"]
  assert len(s.val) == round(0.1 * n) and len(s.test_id) == round(0.1 * n)
  assert len(s.ood["time"]) == stats["n_time"]
  assert sum(len(s.ood[f"product/{p}"]) for p in A.PRODUCTS) == 7 * 80
  # Model Ratatouille's auxiliary task: the ID ratings' year, on the same sentences.
  year = s.aux["year"]
  np.testing.assert_array_equal(year.train.large["text"], s.train.large["text"])
  np.testing.assert_array_equal(year.val.large["text"], s.val.large["text"])
  assert year.num_classes == int(_cfg().id_years)
  assert set(year.train.label.tolist()) == set(range(year.num_classes))


def test_cache_is_used_and_keyed_by_the_files(rows, tmp_path):
  F.write_tsv(tmp_path / "t", rows, malformed=False)
  first, _, _ = _splits(tmp_path / "t")
  cached = list((tmp_path / "cache" / "amazon").glob("*.json"))
  assert len(cached) == 1
  again, _, _ = _splits(tmp_path / "t")
  assert_same_splits(first, again)
  assert len(list((tmp_path / "cache" / "amazon").glob("*.json"))) == 1
  # Different content (a rewritten file): a new entry, not the stale sample.
  F.write_tsv(tmp_path / "t", F.ratings(seed=3, n_books=1200, per_product=80), malformed=False)
  changed, _, _ = _splits(tmp_path / "t")
  assert len(list((tmp_path / "cache" / "amazon").glob("*.json"))) == 2
  assert not np.array_equal(changed.val.large["text"], first.val.large["text"])


class _System:
  def __init__(self, cmd):
    self.cmd = cmd

  def __reduce__(self):
    import os
    return os.system, (self.cmd,)


@pytest.mark.parametrize("damage", ["crafted_pickle", "truncated", "altered", "other_layout"])
def test_damaged_or_crafted_cache_entry_is_rebuilt_never_run(rows, tmp_path, damage, caplog):
  """The cache is data only (JSON whose hash is checked before it is parsed):
  an entry replaced by a pickle that would write a marker, cut short, edited
  without its hash, or of another layout is rebuilt with a warning; a
  leftover pickle of the old cache format beside it is never opened."""
  import hashlib
  import json
  import pickle
  F.write_tsv(tmp_path / "t", rows, malformed=False)
  first, df, _ = _splits(tmp_path / "t")
  (entry,) = (tmp_path / "cache" / "amazon").glob("*.json")
  good = entry.read_bytes()
  marker = tmp_path / "MARKER"
  head, payload = good.split(b"\n", 1)
  if damage == "crafted_pickle":
    entry.write_bytes(pickle.dumps(_System(f"touch {marker}")))
    (entry.parent / "0123456789abcdef0123.pkl").write_bytes(
        pickle.dumps(_System(f"touch {marker}")))
  elif damage == "truncated":
    entry.write_bytes(good[: len(good) // 2])
  elif damage == "altered":   # the first rating changed, the header left as it was
    i = payload.index(b'"rating":[') + len(b'"rating":[')
    star = b"1" if payload[i:i + 1] != b"1" else b"2"
    entry.write_bytes(head + b"\n" + payload[:i] + star + payload[i + 1:])
  else:   # a consistent header, but not our columns
    body = json.dumps({"columns": {"group": []}, "stats": {}}).encode()
    h = json.loads(head)
    h.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    entry.write_bytes(json.dumps(h).encode() + b"\n" + body)
  with caplog.at_level("WARNING"):
    again, df2, _ = _splits(tmp_path / "t")
  assert not marker.exists()
  assert "rebuilding it" in caplog.text, caplog.text
  if damage == "crafted_pickle":
    assert "ignoring 1 pickle file(s)" in caplog.text
  assert_same_splits(first, again)
  assert entry.read_bytes() == good   # rebuilt in place
  A.read_cache(entry)


# -- the ood/products aggregate on the paper's numbers -------------------------------

# Paper Table 11 (OOD RMSE per product category), then Table 1's "OOD (7 products)".
TABLE11 = {
    "ft": ([2.016, 2.015, 2.024, 1.986, 2.029, 2.075, 2.057], 2.029),
    "ht": ([1.925, 1.875, 1.814, 1.645, 1.966, 1.916, 1.892], 1.862),
    "lp": ([1.776, 1.782, 1.752, 1.668, 1.763, 1.792, 1.782], 1.759),
    "fs": ([1.564, 1.505, 1.471, 1.241, 1.553, 1.593, 1.532], 1.494),
    "lp_ft": ([1.692, 1.693, 1.657, 1.551, 1.676, 1.716, 1.696], 1.669),
    "ft_robust": ([1.757, 1.754, 1.745, 1.686, 1.759, 1.789, 1.776], 1.752),
    "ft_fs": ([1.561, 1.526, 1.506, 1.341, 1.562, 1.604, 1.550], 1.521),
    "ft_zeroshot": ([2.509, 2.467, 2.527, 2.647, 2.481, 2.478, 2.498], 2.515),
    "levi": ([1.346, 1.303, 1.275, 1.118, 1.348, 1.366, 1.327], 1.298),
}


@pytest.mark.parametrize("method", sorted(TABLE11))
def test_table1_products_column_is_unweighted_mean_of_table11(method):
  per_product, table1 = TABLE11[method]
  rec = {"dataset": "amazon_reviews", "method": method, "seed": 0, "status": "ok",
         "metric": "rmse",
         "scores": {"test_id": 1.0, "ood/time": 1.5,
                    **{f"ood/product/{p}": v for p, v in zip(A.PRODUCTS, per_product)}},
         "n_examples": {"test_id": 5, "ood/time": 7,
                        **{f"ood/product/{p}": 40 + i for i, p in enumerate(A.PRODUCTS)}}}
  frame = tables.dataset_frame([rec])
  assert list(frame["split"]) == ["test_id", "ood/time", "ood/products", "ood/products:weighted",
                                  "ood/products:worst", *[f"ood/product/{p}" for p in A.PRODUCTS]]
  got = frame[frame["split"] == "ood/products"]["mean"].item()
  assert abs(got - table1) <= 0.0006, (got, table1)
  assert paper_tables.split_values(rec, "ood/products") == pytest.approx(got)
  assert frame[frame["split"] == "ood/products"]["n_examples"].item() == sum(range(40, 47))
  assert paper_tables.headline_value(rec) == 1.5   # figures use the time shift


def test_paper_tables_name_the_same_products():
  assert paper_tables.PRODUCTS == A.PRODUCTS


# -- bad input ----------------------------------------------------------------------

def test_no_data_says_what_to_place_where(tmp_path):
  for d in (None, str(tmp_path / "nope"), str(tmp_path)):
    with pytest.raises(UserError) as e:
      A.load_rows(d, _cfg())
    msg = str(e.value)
    assert "\n" not in msg
    assert "amazon_reviews_us_{Books_v1_02,Watches_v1_00" in msg and "--data_dir" in msg
    assert "amazon_us_reviews/" in msg and "meta_" in msg


def test_missing_category_is_named(rows, tmp_path):
  F.write_tsv(tmp_path, rows, malformed=False)
  next(tmp_path.glob("amazon_reviews_us_Furniture_v1_00.tsv*")).unlink()
  with pytest.raises(DataError, match=r"missing amazon_reviews_us_Furniture_v1_00\.tsv\(\.gz\)"
                     r".*--config\.data\.amazon_reviews\.products"):
    A.load_rows(str(tmp_path), _cfg())
  # ... and a run restricted to the categories present works.
  s, _, _ = _splits(tmp_path, _cfg(products="Watches,Toys"))
  assert list(s.ood) == ["time", "product/Watches", "product/Toys"]
  with pytest.raises(UserError, match="unknown Shoes"):
    A.load_rows(str(tmp_path), _cfg(products="Watches,Shoes"))


def _books(tmp_path, rows, edit):
  F.write_tsv(tmp_path, rows, malformed=False)
  p = next(tmp_path.glob("amazon_reviews_us_Books_v1_02.tsv*"))
  lines = gzip.decompress(p.read_bytes()).decode().splitlines()
  lines = edit(lines)
  p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
  return p


def test_header_less_file_names_the_file(rows, tmp_path):
  p = _books(tmp_path, rows, lambda lines: lines[1:])
  with pytest.raises(DataError, match=rf"{p.name}: missing column\(s\).*TSV header"):
    A.load_rows(str(tmp_path), _cfg())


@pytest.mark.parametrize("field,value,why", [(14, "31/12/1997", "is not a date"),
                                              (7, "6", "not a whole number of stars in 1-5"),
                                              (7, "x", "not a whole number of stars")])
def test_bad_value_names_file_and_line(rows, tmp_path, field, value, why):
  def edit(lines):
    f = lines[5].split("\t")
    f[field] = value
    lines[5] = "\t".join(f)
    return lines
  p = _books(tmp_path, rows, edit)
  with pytest.raises(DataError, match=rf"{p.name} line 6: .*{why}.*on_bad=skip"):
    A.load_rows(str(tmp_path), _cfg(on_bad="error"))
  # Skipping (the default) counts it.
  _, _, stats = _splits(tmp_path)
  assert stats["skipped"][A.BOOKS] == 1 and "line 6" in stats["first_skipped"][A.BOOKS]


def test_mostly_bad_file_is_an_error(rows, tmp_path):
  def edit(lines):
    return [lines[0]] + [l.replace("\t19", "\t3/4/19") for l in lines[1:]]
  p = _books(tmp_path, rows, edit)
  with pytest.raises(DataError, match=rf"{p.name}: \d+ of \d+ rows are malformed"):
    A.load_rows(str(tmp_path), _cfg())


def test_truncated_gzip_names_the_file(rows, tmp_path):
  F.write_tsv(tmp_path, rows, malformed=False)
  p = next(tmp_path.glob("amazon_reviews_us_Books_v1_02.tsv.gz"))
  p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
  with pytest.raises(DataError, match=rf"{p.name}: truncated or corrupt gzip"):
    A.load_rows(str(tmp_path), _cfg())


def test_too_few_years(tmp_path):
  few = [r for r in F.ratings(seed=0, n_books=600, per_product=20)
         if r["group"] != A.BOOKS or r["date"] < "1999"]
  F.write_tsv(tmp_path, few, malformed=False)
  with pytest.raises(DataError, match=r"span 4 calendar year\(s\).*at least 5"):
    A.load_rows(str(tmp_path), _cfg())


@pytest.mark.slow
def test_cli_writes_every_amazon_row(rows, tmp_path):
  """The acceptance run, on two methods and one seed to stay short in CI:
  the table holds test_id, ood/time, ood/products and the seven products."""
  import os
  import subprocess
  import sys

  import pandas as pd
  F.write_tsv(tmp_path / "data", rows)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
         "LEVI_CACHE": str(tmp_path / "cache")}
  proc = subprocess.run(
      [sys.executable, "run_benchmark.py", "--dataset", "amazon_reviews", "--method",
       "lp,levi_pretrained", "--seeds", "0", "--preset", "smoke", "--data_dir",
       str(tmp_path / "data"), "--workdir", str(tmp_path / "wd")],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  f = pd.read_csv(tmp_path / "wd" / "tables" / "amazon_reviews.csv")
  want = ["test_id", "ood/time", "ood/products", "ood/products:weighted", "ood/products:worst",
          *[f"ood/product/{p}" for p in A.PRODUCTS]]
  for m in ("lp", "levi_pretrained"):
    got = f[f["method"] == m]
    assert list(got["split"]) == want
    assert got["mean"].between(0.3, 3.0).all()
    per = got[got["split"].str.startswith("ood/product/")]["mean"]
    assert got[got["split"] == "ood/products"]["mean"].item() == pytest.approx(per.mean())
  assert "skipped 1 malformed row" in proc.stderr
