"""Seeded samples of Amazon Review ratings (bottom-k by a content hash,
streamed once per file) and their hashed JSON cache.

The seeded samples are bottom-k samples of a hash of each rating's content
(seed, group, customer, product, date, rating), so they do not depend on file
order or format, and a smaller cap gives a prefix of a larger one. A rating
repeated with the same content is counted once. The sampled rows are cached
(``$LEVI_CACHE/amazon/<key>.json``), keyed by the files' sizes and times, the
sampling settings and the columns the entry holds (the review texts only when
asked for): JSON with a SHA-256 of its content checked on read, so a cache
shared with others can hold data but never code, and an entry that is cut
short, altered, of another layout or not ours is rebuilt with a warning.
"""
from __future__ import annotations

import hashlib
import heapq
import json
from pathlib import Path

import pandas as pd
from absl import logging
from tqdm.auto import tqdm

from benchmark import fetch
from benchmark.errors import DataError, UserError
from benchmark.store import atomic_write_bytes
from datasets.amazon_sources import BOOKS, BadRows, Source, find_source, products_of, \
    rating_of, titles_2018

COLUMNS = ("group", "customer_id", "product_id", "title", "date", "rating", "key")
TEXT_COLUMNS = ("headline", "body")
# 2: JSON with a content hash. 1 was a pickle: never read again (a pickle
# in a shared cache runs its writer's code in every reader's process).
CACHE_VERSION = 2
CACHE_FORMAT = "levi-amazon-sample"
SAMPLING_KEYS = ("split_seed", "id_years", "val_fraction", "test_fraction", "max_train",
                 "max_val", "max_test", "max_eval", "books_version", "on_bad",
                 "max_bad_fraction")


def columns_of(text: bool) -> tuple[str, ...]:
  """A sample's columns: with the review headline and body if ``text``."""
  return COLUMNS + TEXT_COLUMNS if text else COLUMNS


def content_key(seed: int, group: str, customer: str, product: str, date: str,
                rating: int) -> int:
  """The 64-bit hash a rating is sampled by: the same for the same content in
  every source format."""
  h = hashlib.blake2b(f"{seed}\x1f{group}\x1f{customer}\x1f{product}\x1f{date}\x1f{rating}"
                      .encode(), digest_size=8)
  return int.from_bytes(h.digest(), "big")


class BottomK:
  """The ``k`` rows with the smallest keys (all rows when ``k`` is 0); rows
  with equal keys (the same content) are kept once."""

  def __init__(self, k: int):
    self.k = k
    self.heap: list[int] = []           # negated keys: a max-heap
    self.rows: dict[int, tuple] = {}
    self.seen = 0

  def add(self, key: int, row: tuple) -> None:
    if key in self.rows:
      self.rows[key] = min(self.rows[key], row)   # deterministic whatever the order
      return
    self.seen += 1
    if self.k and len(self.heap) >= self.k:
      if key >= -self.heap[0]:
        return
      del self.rows[-heapq.heappushpop(self.heap, -key)]
    else:
      heapq.heappush(self.heap, -key)
    self.rows[key] = row

  def sorted(self) -> list[tuple]:
    return [self.rows[k] for k in sorted(self.rows)]


def _cap(x: int) -> int:
  return int(x) if int(x) > 0 else 0


# A sampled row before its group and key: the title comes before the texts,
# so among ratings of the same content the title kept (``BottomK``'s min) is
# the same with or without texts, and so are the splits.
ROW_FIELDS = ("customer_id", "product_id", "date", "rating", "title")


def sample(src: Source, c, groups: list[str], text: bool = False,
           dataset: str = "amazon_reviews") -> tuple[pd.DataFrame, dict]:
  """Streams every file once; returns the sampled rows (``columns_of(text)``,
  ``group`` one of ``train``, ``val``, ``test_id``, ``time``,
  ``product/<Name>``) and per-file counts."""
  seed, on_bad = int(c.split_seed), str(c.on_bad)
  id_k = 0 if 0 in (_cap(c.max_train), _cap(c.max_val), _cap(c.max_test)) else (
      _cap(c.max_train) + _cap(c.max_val) + _cap(c.max_test))
  ev_k = _cap(c.max_eval)
  stats: dict = {"read": {}, "skipped": {}, "first_skipped": {}}
  books_years: dict[int, BottomK] = {}
  year_counts: dict[int, int] = {}
  products: dict[str, BottomK] = {}
  for group in groups:
    bad = BadRows(dataset)
    label = src.label(group)
    heap = products.setdefault(group, BottomK(ev_k)) if group != BOOKS else None
    books_k = max(id_k, ev_k) if id_k and ev_k else 0
    valid = 0
    for r in tqdm(src.rows(group, bad, on_bad, text), desc=f"{dataset} {group}",
                  unit=" rows", leave=False, disable=None, mininterval=2):
      rating = rating_of(r.raw_rating)
      if rating is None:
        bad.bad(f"{r.where}: rating {r.raw_rating!r} is not a whole number of stars in 1-5",
                on_bad)
        continue
      if r.date is None:
        bad.bad(f"{r.where}: date {r.raw_date!r} is not a date (YYYY-MM-DD or Unix seconds)",
                on_bad)
        continue
      if not r.customer or not r.product:
        bad.bad(f"{r.where}: empty customer or product id", on_bad)
        continue
      valid += 1
      key = content_key(seed, group, r.customer, r.product, r.date, rating)
      row = (r.customer, r.product, r.date, rating, r.title,
             *((r.headline, r.body) if text else ()))
      if group == BOOKS:
        year = int(r.date[:4])
        year_counts[year] = year_counts.get(year, 0) + 1
        books_years.setdefault(year, BottomK(books_k)).add(key, row)
      else:
        heap.add(key, row)
    total = valid + bad.skipped
    if not valid:
      raise DataError(f"{label}: no valid rating in it (first problem: "
                      f"{bad.first or 'no rows'}); is it the right file?")
    if bad.skipped > float(c.max_bad_fraction) * total:
      raise DataError(f"{label}: {bad.skipped} of {total} rows are malformed (first: "
                      f"{bad.first}); is it the right file and format?")
    if bad.skipped:
      logging.warning("%s: skipped %d malformed row(s) of %d in %s (first: %s)", dataset,
                      bad.skipped, total, label, bad.first)
    stats["read"][group] = total
    stats["skipped"][group] = bad.skipped
    if bad.first:
      stats["first_skipped"][group] = bad.first

  out = []
  if BOOKS in groups:
    years = sorted(books_years)
    n_id_years = int(c.id_years)
    if len(years) < n_id_years + 1:
      raise DataError(f"{src.label(BOOKS)}: Books ratings span "
                      f"{len(years)} calendar year(s) ({', '.join(map(str, years))}); the ID "
                      f"years ({n_id_years}) and the most recent year need at least "
                      f"{n_id_years + 1}")
    id_years, last = years[:n_id_years], years[-1]
    merged = BottomK(id_k)
    for y in id_years:
      for key, row in books_years[y].rows.items():
        merged.add(key, row)
    pool = sorted(merged.rows.items())
    n_id = sum(year_counts[y] for y in id_years)
    n_val = min(_cap(c.max_val) or n_id, int(round(n_id * float(c.val_fraction))))
    n_test = min(_cap(c.max_test) or n_id, int(round(n_id * float(c.test_fraction))))
    n_train = min(_cap(c.max_train) or n_id, n_id - n_val - n_test, len(pool) - n_val - n_test)
    parts = (("val", pool[:n_val]), ("test_id", pool[n_val:n_val + n_test]),
             ("train", pool[n_val + n_test:n_val + n_test + n_train]))
    for name, rows in parts:
      out += [(name, key, row) for key, row in rows]
    time_rows = sorted(books_years[last].rows.items())[: ev_k or None]
    out += [("time", key, row) for key, row in time_rows]
    stats.update(id_years=id_years, time_year=last, n_id=n_id, n_time=year_counts[last])
  for g, heap in products.items():
    out += [(f"product/{g}", key, row) for key, row in sorted(heap.rows.items())]
    stats.setdefault("n_product", {})[g] = heap.seen
  fields = ROW_FIELDS + (TEXT_COLUMNS if text else ())
  df = pd.DataFrame([{"group": g, "key": k, **dict(zip(fields, row))} for g, k, row in out],
                    columns=list(columns_of(text)))
  if src.kind == "json":
    df = _fill_titles_2018(src, df)
  return df, stats


def _fill_titles_2018(src: Source, df: pd.DataFrame) -> pd.DataFrame:
  titles: dict[str, str] = {}
  for group, (_, meta) in src.files.items():
    name = BOOKS if group == BOOKS else f"product/{group}"
    rows = df["group"].isin(["train", "val", "test_id", "time"]) if group == BOOKS else (
        df["group"] == name)
    titles.update(titles_2018(meta, set(df.loc[rows, "product_id"])))
  df = df.copy()
  df["title"] = df["product_id"].map(titles).fillna("")
  return df


# -- the cache ---------------------------------------------------------------------

def load_rows(data_dir: str | None, c, text: bool = False,
              dataset: str = "amazon_reviews") -> tuple[pd.DataFrame, dict]:
  """The sample of the files in ``data_dir`` under the settings ``c``, from
  the cache when it holds it; with the review texts if ``text``."""
  groups = [BOOKS, *products_of(c, dataset)]
  src = find_source(data_dir, groups, str(c.books_version), dataset)
  columns = columns_of(text)
  # Keyed by what the entry holds: a sample with the texts is its own entry (a
  # text-less one is never misread as it); the text-less key is the one
  # entries had before texts existed, so those stay valid.
  ident = json.dumps([CACHE_VERSION, src.fingerprint(), groups,
                      {k: c[k] for k in SAMPLING_KEYS},
                      *([list(columns)] if text else [])],
                     sort_keys=True, default=str)
  folder = fetch.cache_dir() / "amazon"
  path = folder / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"
  old = sorted(folder.glob("*.pkl")) if folder.is_dir() else []
  if old:
    logging.warning("%s: ignoring %d pickle file(s) in %s (the old cache "
                    "format: never read, a pickle can run code); delete them", dataset,
                    len(old), folder)
  if path.exists():
    try:
      return read_cache(path, columns)
    except CacheEntryError as e:
      logging.warning("%s: cache entry %s %s; rebuilding it", dataset, path, e)
  df, stats = sample(src, c, groups, text, dataset)
  try:
    atomic_write_bytes(path, cache_bytes(df, stats))
  except (OSError, UserError) as e:
    logging.warning("%s: could not cache the sample in %s (%s)", dataset, path, e)
  return df, stats


class CacheEntryError(ValueError):
  """Why a cache entry is not used (said in the rebuild warning)."""


def cache_bytes(df: pd.DataFrame, stats: dict) -> bytes:
  """A header line (format, version, the payload's length and SHA-256), then
  the payload: the sample's columns and the per-file counts as JSON."""
  payload = json.dumps({"columns": {col: df[col].tolist() for col in df.columns},
                        "stats": stats}, separators=(",", ":"), default=str).encode()
  head = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "bytes": len(payload),
          "sha256": hashlib.sha256(payload).hexdigest()}
  return json.dumps(head, sort_keys=True).encode() + b"\n" + payload


def read_cache(path: Path, columns: tuple[str, ...] = COLUMNS) -> tuple[pd.DataFrame, dict]:
  """The sample ``cache_bytes`` wrote, holding exactly ``columns``;
  ``CacheEntryError`` for anything else: only JSON is parsed, after its hash
  matched."""
  try:
    data = path.read_bytes()
  except OSError as e:
    raise CacheEntryError(f"is unreadable ({e.strerror})") from None
  head_raw, _, payload = data.partition(b"\n")
  try:
    head = json.loads(head_raw[:1000].decode("utf-8"))
  except ValueError:
    raise CacheEntryError("is not a sample cache entry (no JSON header)") from None
  if not (isinstance(head, dict) and head.get("format") == CACHE_FORMAT
          and head.get("version") == CACHE_VERSION):
    raise CacheEntryError("is not a sample cache entry of this version")
  if head.get("bytes") != len(payload):
    raise CacheEntryError(f"is cut short or extended ({len(payload)} payload bytes, its "
                          f"header says {head.get('bytes')})")
  if head.get("sha256") != hashlib.sha256(payload).hexdigest():
    raise CacheEntryError("does not match its content hash (altered or damaged)")
  try:
    body = json.loads(payload.decode("utf-8"))
    cols, stats = body["columns"], body["stats"]
    if not (isinstance(cols, dict) and set(cols) == set(columns) and isinstance(stats, dict)
            and all(isinstance(cols[k], list) for k in columns)
            and len({len(cols[k]) for k in columns}) == 1):
      raise ValueError("columns")
    df = pd.DataFrame({k: cols[k] for k in columns}, columns=list(columns))
  except (ValueError, KeyError, TypeError):
    raise CacheEntryError("holds no sample of this layout") from None
  return df, stats
