"""Raw-format readers on fixtures written here in each exact format: plain
and gzipped TSV and JSON lines, IDX; truncated, malformed and header-less
files give one-line errors naming the file (and line)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from benchmark.errors import DataError
from benchmark.readers import Counter, iter_jsonl, iter_tsv, read_idx

TSV_HEADER = ("marketplace\tcustomer_id\treview_id\tproduct_id\tproduct_parent\tproduct_title\t"
              "product_category\tstar_rating\thelpful_votes\ttotal_votes\tvine\t"
              "verified_purchase\treview_headline\treview_body\treview_date")
ROW = ("US\t{cid}\tR1\tB00{pid}\t1\tA Book\tBooks\t{star}\t0\t0\tN\tY\tGreat\tRead it\t"
       "2015-08-31")
NEED = ["customer_id", "product_id", "product_title", "star_rating", "review_date"]


def _tsv(tmp_path, rows, gz=False, header=TSV_HEADER, name="amazon_reviews_us_Books_v1_00.tsv"):
  text = "\n".join([header, *rows]) + "\n"
  p = tmp_path / (name + (".gz" if gz else ""))
  p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
  return p


@pytest.mark.parametrize("gz", [False, True])
def test_tsv_plain_and_gzip(tmp_path, gz):
  p = _tsv(tmp_path, [ROW.format(cid=1, pid=2, star=5), ROW.format(cid=3, pid=4, star=1)], gz)
  rows = list(iter_tsv(p, NEED))
  assert [r["customer_id"] for r in rows] == ["1", "3"]
  assert rows[0]["product_title"] == "A Book" and rows[1]["star_rating"] == "1"


def test_tsv_truncated_gzip(tmp_path):
  p = _tsv(tmp_path, [ROW.format(cid=i, pid=i, star=3) for i in range(2000)], gz=True)
  p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
  with pytest.raises(DataError, match=r"truncated or corrupt gzip.*download the file again") as e:
    list(iter_tsv(p, NEED))
  assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_tsv_without_header_names_missing_columns(tmp_path):
  p = _tsv(tmp_path, [ROW.format(cid=2, pid=2, star=4)], header=ROW.format(cid=1, pid=1, star=5))
  with pytest.raises(DataError, match=r"missing column\(s\) customer_id.*expected the"):
    list(iter_tsv(p, NEED, fix="expected the amazon_reviews_us_*.tsv header"))


def test_tsv_malformed_row_errors_or_is_counted(tmp_path):
  p = _tsv(tmp_path, [ROW.format(cid=1, pid=1, star=5), "US\t2\tbroken row",
                      ROW.format(cid=3, pid=3, star=2)])
  with pytest.raises(DataError, match=r"line 3: 3 tab-separated fields, the header has 15"):
    list(iter_tsv(p, NEED))
  c = Counter()
  assert len(list(iter_tsv(p, NEED, on_bad="skip", counter=c))) == 2
  assert (c.rows, c.skipped) == (2, 1) and "line 3" in c.first_bad


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl(tmp_path, gz):
  objs = [{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1420070400},
          {"reviewerID": "A2", "asin": "B2", "overall": 3.0, "unixReviewTime": 1420070401}]
  text = "".join(json.dumps(o) + "\n" for o in objs) + "{not json\n"
  p = tmp_path / ("Books_5.json" + (".gz" if gz else ""))
  p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
  need = ["reviewerID", "asin", "overall", "unixReviewTime"]
  with pytest.raises(DataError, match=r"Books_5\.json(\.gz)? line 3: not a JSON object"):
    list(iter_jsonl(p, need))
  c = Counter()
  assert [o["asin"] for o in iter_jsonl(p, need, on_bad="skip", counter=c)] == ["B1", "B2"]
  assert c.skipped == 1
  (tmp_path / "m.json").write_text('{"asin": "B1"}\n')
  with pytest.raises(DataError, match="line 1: missing key"):
    list(iter_jsonl(tmp_path / "m.json", need))


def _idx(arr: np.ndarray) -> bytes:
  head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
  return head + arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_truncated_and_foreign(tmp_path, gz):
  arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
  blob = _idx(arr)
  p = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
  p.write_bytes(gzip.compress(blob) if gz else blob)
  np.testing.assert_array_equal(read_idx(p), arr)
  short = blob[:-10]
  p.write_bytes(gzip.compress(short) if gz else short)
  with pytest.raises(DataError, match=r"IDX data has .* bytes.*truncated"):
    read_idx(p)
  p.write_bytes(b"PK\x03\x04 not idx")
  with pytest.raises(DataError, match="not an IDX file"):
    read_idx(p)


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match="file not found"):
    read_idx(tmp_path / "nope")
