"""Writes a small synthetic Amazon Review fixture in one of the exact on-disk
formats ``amazon_reviews`` and ``amazon_reviews_text`` read, for tests and
for trying the pipeline without the real files (which are never downloaded at
run time):

  python tools/amazon_fixture.py --out /tmp/amazon --format tsv
  python run_benchmark.py --dataset amazon_reviews --method all --preset smoke \\
      --data_dir /tmp/amazon
  python run_benchmark.py --table 13 --preset smoke --data_dir /tmp/amazon

Formats: ``tsv`` (``amazon_reviews_us_<Category>_v1_00.tsv``, Books gzipped
and holding one malformed row), ``json`` (Amazon Review Data 2018:
``<Category>.json(.gz)`` and ``meta_<Category>.json(.gz)``, Toys under its 2018
name ``Toys_and_Games``) and ``tfds`` (TFDS's own ``amazon_us_reviews``
builder prepares the TSV files into a TFDS data dir). Every format holds the
same ratings. The ratings are synthetic: a customer bias plus a product
quality that shows in the product's title, plus noise. Each rating has a
review headline and body drawn (seeded) from a few phrases per star level, so
the text task (``amazon_reviews_text``) is learnable at this size; the
phrases' sentiment follows the star, with one review in ten neutral.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from datasets.amazon import BOOKS, PRODUCTS  # noqa: E402

TSV_HEADER = ("marketplace", "customer_id", "review_id", "product_id", "product_parent",
              "product_title", "product_category", "star_rating", "helpful_votes",
              "total_votes", "vine", "verified_purchase", "review_headline", "review_body",
              "review_date")
GOOD, PLAIN, BAD = ("Classic", "Deluxe", "Premium"), ("Basic", "Standard", "Simple"), (
    "Cheap", "Flimsy", "Budget")
NOUNS = {BOOKS: "Novel", "Watches": "Watch", "Toys": "Puzzle", "Sports": "Tracker",
         "Music": "Album", "Jewelry": "Earrings", "Furniture": "Sofa", "Baby": "Diaper Bag"}
FORMATS = ("tsv", "json", "tfds")
# Review phrases per star level (1-5): headlines and body sentences.
HEADLINES = {1: ("Terrible", "Waste of money", "Very disappointed"),
             2: ("Not great", "Rather poor", "Below expectations"),
             3: ("It is okay", "Average at best", "Mixed feelings"),
             4: ("Pretty good", "Solid choice", "Happy with it"),
             5: ("Excellent", "Absolutely love it", "Best purchase ever")}
BODIES = {1: ("It broke after one day.", "I regret buying this.", "Completely useless."),
          2: ("Several things went wrong.", "I expected much more.", "Poorly made."),
          3: ("Some parts are fine, some are not.", "Nothing special.", "It does the job."),
          4: ("Works well for me.", "Good value overall.", "I would buy it again."),
          5: ("Perfect in every way.", "Highly recommended to everyone.", "Simply wonderful.")}
NEUTRAL = ("A review", "I received it last week.")


def ratings(seed: int = 0, n_books: int = 2400, per_product: int = 200) -> list[dict]:
  """The fixture's ratings: Books over 1995-2002 (ID: 1995-1998; time OOD:
  2002), the other categories over 2009-2015."""
  rng = np.random.default_rng(seed)
  customers = [str(10_000_000 + int(x)) for x in rng.choice(89_999_999, 300, replace=False)]
  bias = dict(zip(customers, rng.normal(0, 0.4, len(customers))))
  rows = []
  for group in (BOOKS, *PRODUCTS):
    n_items = 200 if group == BOOKS else 40
    quality = rng.normal(0, 0.8, n_items)
    if group == BOOKS:
      items = [f"{int(x):010d}" for x in rng.choice(10**9, n_items, replace=False)]
    else:
      items = [f"B00{int(x):07d}" for x in rng.choice(10**7, n_items, replace=False)]
    titles = []
    for i, q in enumerate(quality):
      words = GOOD if q > 0.4 else BAD if q < -0.4 else PLAIN
      titles.append(f"{words[i % 3]} {NOUNS[group]} No. {i}")
    n = n_books if group == BOOKS else per_product
    if group == BOOKS:
      years = rng.choice(np.arange(1995, 2003), n, p=np.linspace(1, 2, 8) / np.linspace(1, 2, 8).sum())
    else:
      years = rng.integers(2009, 2016, n)
    for year in years:
      c = customers[rng.integers(len(customers))]
      i = int(rng.integers(n_items))
      day = dt.date(int(year), 1, 1) + dt.timedelta(days=int(rng.integers(365)))
      star = int(np.clip(np.round(3.6 + bias[c] + quality[i] + rng.normal(0, 0.6)), 1, 5))
      rows.append({"group": group, "customer_id": c, "product_id": items[i],
                   "title": titles[i], "date": day.isoformat(), "rating": star})
  _add_reviews(rows, np.random.default_rng([seed, 1]))
  return rows


def _add_reviews(rows: list[dict], rng) -> None:
  """Each rating's headline and body, from its own generator (the ratings
  above stay those of earlier fixtures)."""
  for r in rows:
    star = r["rating"]
    if rng.random() < 0.1:
      r["headline"], r["body"] = NEUTRAL
      continue
    body = [BODIES[star][k] for k in rng.permutation(3)[:2]]
    r["headline"] = HEADLINES[star][int(rng.integers(3))]
    r["body"] = f"{' '.join(body)} The {r['title']} arrived on time."


def _tsv_text(rows: list[dict], group: str, malformed: bool) -> str:
  lines = ["\t".join(TSV_HEADER)]
  for k, r in enumerate(rows):
    lines.append("\t".join([
        "US", r["customer_id"], f"R{k:08d}", r["product_id"], str(100000 + k % 997),
        r["title"], group, str(r["rating"]), "0", "0", "N", "Y", r["headline"],
        r["body"], r["date"]]))
    if malformed and k == 10:  # a row cut short, as a few rows of the real files are
      lines.append("\t".join(["US", "12345678", "RBROKEN", "0000000000", "1", "Broken"]))
  return "\n".join(lines) + "\n"


def _write(path: Path, text: str, gz: bool) -> Path:
  path = path.with_name(path.name + (".gz" if gz else ""))
  data = text.encode()
  path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
  return path


def _file_stem(group: str) -> str:
  return f"amazon_reviews_us_{group}_{'v1_02' if group == BOOKS else 'v1_00'}"


def write_tsv(out: Path, rows: list[dict], malformed: bool = True) -> list[Path]:
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for k, group in enumerate((BOOKS, *PRODUCTS)):
    mine = [r for r in rows if r["group"] == group]
    paths.append(_write(out / f"{_file_stem(group)}.tsv",
                        _tsv_text(mine, group, malformed and group == BOOKS),
                        gz=group == BOOKS or k % 2 == 0))
  return paths


def write_json(out: Path, rows: list[dict]) -> list[Path]:
  """Amazon Review Data 2018 files; Toys under its 2018 name."""
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for k, group in enumerate((BOOKS, *PRODUCTS)):
    name = "Toys_and_Games" if group == "Toys" else group
    mine = [r for r in rows if r["group"] == group]
    lines, meta = [], {}
    for r in mine:
      day = dt.date.fromisoformat(r["date"])
      unix = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
      lines.append(json.dumps({
          "overall": float(r["rating"]), "verified": True,
          "reviewTime": f"{day.month:02d} {day.day}, {day.year}",
          "reviewerID": r["customer_id"], "asin": r["product_id"],
          "reviewerName": "A Customer", "reviewText": r["body"],
          "summary": r["headline"], "unixReviewTime": unix}))
      meta[r["product_id"]] = r["title"]
    meta_lines = [json.dumps({"category": [name], "description": [], "title": t,
                              "brand": "", "asin": a}) for a, t in sorted(meta.items())]
    gz = k % 2 == 0
    paths.append(_write(out / f"{name}.json", "\n".join(lines) + "\n", gz))
    paths.append(_write(out / f"meta_{name}.json", "\n".join(meta_lines) + "\n", gz))
  return paths


def write_tfds(out: Path, rows: list[dict], download: Path) -> Path:
  """Prepares ``amazon_us_reviews/<Category>`` in the TFDS data dir ``out``
  with TFDS's own builder, its download replaced by local TSV files."""
  import tensorflow_datasets as tfds
  write_tsv(download, rows, malformed=False)  # the builder's csv reader has no skipping
  by_url = {}
  for group in (BOOKS, *PRODUCTS):
    stem = _file_stem(group)
    by_url[stem] = next(download.glob(f"{stem}.tsv*"))

  def local(self, url):
    stem = url.rsplit("/", 1)[-1].split(".tsv")[0]
    path = by_url[stem]
    if path.suffix == ".gz":  # the builder reads the extracted file
      plain = path.with_suffix("")
      plain.write_bytes(gzip.decompress(path.read_bytes()))
      path = plain
    return str(path)

  with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", local):
    for group in (BOOKS, *PRODUCTS):
      config = _file_stem(group).removeprefix("amazon_reviews_us_")
      tfds.builder(f"amazon_us_reviews/{config}", data_dir=str(out)).download_and_prepare()
  return out


def write(out: Path, fmt: str, seed: int = 0, n_books: int = 2400,
          per_product: int = 200) -> Path:
  rows = ratings(seed, n_books, per_product)
  if fmt == "tsv":
    write_tsv(out, rows)
  elif fmt == "json":
    write_json(out, rows)
  elif fmt == "tfds":
    write_tfds(out, rows, out / "_download")
  else:
    raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True, type=Path)
  ap.add_argument("--format", choices=FORMATS, default="tsv")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--books", type=int, default=2400, help="Books ratings")
  ap.add_argument("--per_product", type=int, default=200, help="ratings per other category")
  a = ap.parse_args()
  write(a.out, a.format, a.seed, a.books, a.per_product)
  print(f"wrote a {a.format} Amazon Review fixture to {a.out}")


if __name__ == "__main__":
  main()
