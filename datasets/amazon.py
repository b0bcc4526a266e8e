"""``amazon_reviews``: Amazon Review with the paper's time and product shifts
(Sec. 5, App. D.1).

Inputs: customer id, product title, product id; label: the star rating (1-5,
regression, RMSE). The review text and headline are never inputs (they give
the label away, paper Table 8).

* ID: ratings of Books from the oldest ``id_years`` (4) calendar years in the
  Books file, split into train / val / test_id (80/10/10) and each part capped
  at ``max_train`` / ``max_val`` / ``max_test`` by a seeded sample;
* OOD group ``time``: Books ratings from the most recent calendar year;
* OOD groups ``product/<Name>`` for Watches, Toys, Sports, Music, Jewelry,
  Furniture, Baby: ratings of that category (every year); each OOD group is a
  seeded sample of at most ``max_eval`` ratings;
* auxiliary task ``year`` (Model Ratatouille): the calendar year of each ID
  train / val rating, from the same sentence.

Sources (``--data_dir``), all giving the same splits for the same content:
* the Amazon Customer Reviews TSV files
  ``amazon_reviews_us_<Category>_v1_00.tsv(.gz)`` (Books:
  ``amazon_reviews_us_Books_<books_version>.tsv(.gz)``, ``v1_02`` by default);
* a TFDS data dir with ``amazon_us_reviews/<Category>_v1_00`` (Books:
  ``Books_<books_version>``) prepared;
* Amazon Review Data 2018 (Ni et al.) JSON lines, ``<Category>.json(.gz)``
  (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``) with titles from
  ``meta_<Category>.json(.gz)`` (``asin``, ``title``); that release names some
  categories differently (``ALIASES_2018``).

Files are streamed. The seeded samples are bottom-k samples of a hash of each
rating's content (seed, group, customer, product, date, rating), so they do not
depend on file order or format, and a smaller cap gives a prefix of a larger
one. A rating repeated with the same content is counted once. The sampled rows
are cached (``$LEVI_CACHE/amazon/<key>.json``), keyed by the files' sizes and
times and the sampling settings: JSON with a SHA-256 of its content checked on
read, so a cache shared with others can hold data but never code, and an
entry that is cut short, altered or not ours is rebuilt with a warning.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import json
from pathlib import Path

import numpy as np
import pandas as pd
from absl import logging
from tqdm.auto import tqdm

from benchmark import fetch, readers
from benchmark.data import (CLASSIFICATION, REGRESSION, AuxTask, DatasetInfo, ShiftSplits,
                            Split, encode_categories)
from benchmark.errors import DataError, UserError
from benchmark.store import atomic_write_bytes
from datasets.base import DATASETS, DatasetSpec

BOOKS = "Books"
PRODUCTS = ("Watches", "Toys", "Sports", "Music", "Jewelry", "Furniture", "Baby")
SMALL_COLUMNS = ("customer_id", "product_id")
TSV_COLUMNS = ("customer_id", "product_id", "product_title", "star_rating", "review_date")
JSON_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
# Amazon Review Data 2018 names these categories differently; it has no
# Watches, Jewelry, Furniture or Baby category of its own (place files named
# after the paper's category, e.g. a filtered Clothing_Shoes_and_Jewelry).
ALIASES_2018 = {"Toys": ("Toys_and_Games",), "Sports": ("Sports_and_Outdoors",),
                "Music": ("CDs_and_Vinyl", "Digital_Music")}
TEMPLATE = ("When the customer id is {customer_id}, the product title is {title}, and the "
            "product id is {product_id}, what can be the customer rating on this product?:")
COLUMNS = ("group", "customer_id", "product_id", "title", "date", "rating", "key")
# 2: JSON with a content hash. 1 was a pickle: never read again (a pickle
# in a shared cache runs its writer's code in every reader's process).
CACHE_VERSION = 2
CACHE_FORMAT = "levi-amazon-sample"


# -- one rating --------------------------------------------------------------------

@dataclasses.dataclass
class BadRows:
  """Rows of one file skipped (``on_bad=skip``) and the first reason."""
  skipped: int = 0
  first: str = ""

  def bad(self, msg: str, on_bad: str) -> None:
    if on_bad == "error":
      raise DataError(f"{msg} (or --config.data.amazon_reviews.on_bad=skip to skip and "
                      f"count such rows)")
    self.skipped += 1
    self.first = self.first or msg

  def merge_reader(self, counter: readers.Counter, on_bad: str) -> None:
    """Rows the reader itself skipped (wrong number of fields, not JSON)."""
    if counter.skipped:
      if on_bad == "error":
        self.bad(counter.first_bad, on_bad)
      self.skipped += counter.skipped
      self.first = self.first or counter.first_bad


def _rating(raw) -> int | None:
  try:
    x = float(raw)
  except (TypeError, ValueError):
    return None
  return int(x) if x == int(x) and 1 <= x <= 5 else None


def _iso_date(raw: str) -> str | None:
  try:
    return dt.date.fromisoformat(raw.strip()).isoformat()
  except (ValueError, AttributeError):
    return None


def _unix_date(raw) -> str | None:
  try:
    return dt.datetime.fromtimestamp(int(raw), dt.timezone.utc).date().isoformat()
  except (TypeError, ValueError, OverflowError, OSError):
    return None


def content_key(seed: int, group: str, customer: str, product: str, date: str,
                rating: int) -> int:
  """The 64-bit hash a rating is sampled by: the same for the same content in
  every source format."""
  h = hashlib.blake2b(f"{seed}\x1f{group}\x1f{customer}\x1f{product}\x1f{date}\x1f{rating}"
                      .encode(), digest_size=8)
  return int.from_bytes(h.digest(), "big")


# -- sources: each yields (where, customer, product, title, raw rating, date, raw date) -

def _tsv_rows(path: Path, bad: BadRows, on_bad: str):
  c = readers.Counter()
  fix = ("expected the Amazon Customer Reviews TSV header (marketplace, customer_id, "
         "review_id, product_id, ...)")
  for r in readers.iter_tsv(path, TSV_COLUMNS, on_bad="skip", counter=c, fix=fix):
    yield (f"{path} line {c.line}", r["customer_id"], r["product_id"], r["product_title"],
           r["star_rating"], _iso_date(r["review_date"]), r["review_date"])
  bad.merge_reader(c, on_bad)


def _json_rows(path: Path, bad: BadRows, on_bad: str):
  c = readers.Counter()
  for obj in readers.iter_jsonl(path, JSON_KEYS, on_bad="skip", counter=c):
    yield (f"{path} line {c.line}", str(obj["reviewerID"]), str(obj["asin"]), None,
           obj["overall"], _unix_date(obj["unixReviewTime"]), obj["unixReviewTime"])
  bad.merge_reader(c, on_bad)


def _tfds_rows(data_dir: str, config_name: str, bad: BadRows, on_bad: str):
  """TFDS ``amazon_us_reviews/<config>``: TensorFlow is imported only here."""
  import tensorflow_datasets as tfds
  name = f"amazon_us_reviews/{config_name}"
  try:
    ds = tfds.load(name, split="train", data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises several types for a missing dataset
    raise DataError(f"{data_dir}: no prepared TFDS {name} ({type(e).__name__}); prepare it "
                    f"there or pass the amazon_reviews_us_*.tsv.gz files") from e
  for i, ex in enumerate(tfds.as_numpy(ds)):
    d = ex["data"]
    date = d["review_date"].decode()
    yield (f"{data_dir}/{name} example {i}", d["customer_id"].decode(),
           d["product_id"].decode(), d["product_title"].decode(), int(d["star_rating"]),
           _iso_date(date), date)


def _titles_2018(path: Path, asins: set[str]) -> dict[str, str]:
  out = {}
  for obj in readers.iter_jsonl(path, ("asin",), on_bad="skip"):
    a = str(obj["asin"])
    if a in asins and a not in out:
      out[a] = str(obj.get("title") or "")
  return out


# -- where the files are -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
  kind: str                       # "tsv" | "tfds" | "json"
  root: Path
  files: dict[str, list[Path]]    # group -> files read (json: [reviews, meta])
  tfds_configs: dict[str, str]    # group -> TFDS config name (kind tfds)

  def label(self, group: str) -> str:
    if self.kind == "tfds":
      return str(self.root / "amazon_us_reviews" / self.tfds_configs[group])
    return str(self.files[group][0])

  def fingerprint(self) -> list:
    out = [self.kind, str(self.root.resolve())]
    for g, paths in sorted(self.files.items()):
      for p in paths:
        st = p.stat()
        out.append([g, str(p), st.st_size, st.st_mtime_ns])
    return out


def _versions(group: str, books_version: str) -> str:
  return f"{group}_{books_version}" if group == BOOKS else f"{group}_v1_00"


def no_data_message(data_dir: str | None, groups: list[str], books_version: str) -> str:
  tsv = ",".join(_versions(g, books_version) for g in groups)
  return (f"amazon_reviews needs the Amazon review files, which are never downloaded at run "
          f"time; place in --data_dir {data_dir or 'DIR'} either amazon_reviews_us_{{{tsv}}}"
          f".tsv(.gz) (Amazon Customer Reviews), or a TFDS data dir with amazon_us_reviews/"
          f"{{{tsv}}} prepared, or {{{','.join(groups)}}}.json(.gz) with meta_<same>.json(.gz) "
          f"(Amazon Review Data 2018)")


def _find(folder: Path, stems: list[str], exts: tuple[str, ...]) -> Path | None:
  for s in stems:
    for e in exts:
      if (folder / f"{s}{e}").is_file():
        return folder / f"{s}{e}"
  return None


def find_source(data_dir: str | None, groups: list[str], books_version: str) -> Source:
  if not data_dir:
    raise UserError(no_data_message(data_dir, groups, books_version))
  root = Path(data_dir)
  if not root.is_dir():
    raise UserError(f"--data_dir {data_dir} does not exist; "
                    + no_data_message(data_dir, groups, books_version))
  for folder in (root, root / "amazon_reviews"):
    if not folder.is_dir():
      continue
    if any(folder.glob("amazon_reviews_us_*.tsv*")):
      found = {g: _find(folder, [f"amazon_reviews_us_{_versions(g, books_version)}"],
                        (".tsv.gz", ".tsv")) for g in groups}
      other = sorted(folder.glob("amazon_reviews_us_Books_v*.tsv*"))
      if BOOKS in groups and found[BOOKS] is None and other:  # another Books version
        v = other[0].name[len("amazon_reviews_us_Books_"):].split(".")[0]
        raise DataError(f"{folder}: missing amazon_reviews_us_Books_{books_version}.tsv(.gz), "
                        f"but {other[0].name} is there: to use it, pass "
                        f"--config.data.amazon_reviews.books_version={v}")
      return _complete(Source("tsv", folder, {g: [p] for g, p in found.items() if p}, {}),
                       groups, lambda g: f"amazon_reviews_us_{_versions(g, books_version)}"
                                         f".tsv(.gz)")
    if (folder / "amazon_us_reviews").is_dir():
      configs = {g: _versions(g, books_version) for g in groups}
      files = {}
      for g, c in configs.items():
        d = folder / "amazon_us_reviews" / c
        if d.is_dir():
          files[g] = sorted(p for p in d.rglob("*") if p.is_file())
      return _complete(Source("tfds", folder, files, configs), groups,
                       lambda g: f"amazon_us_reviews/{configs[g]} (TFDS)")
    if any(folder.glob("*.json*")):
      files = {}
      for g in groups:
        stems = [g, *ALIASES_2018.get(g, ())]
        reviews = _find(folder, stems, (".json.gz", ".json", ".jsonl.gz", ".jsonl"))
        meta = _find(folder, [f"meta_{s}" for s in stems],
                     (".json.gz", ".json", ".jsonl.gz", ".jsonl"))
        if reviews and meta:
          files[g] = [reviews, meta]
      return _complete(Source("json", folder, files, {}), groups,
                       lambda g: "/".join(f"{s}.json(.gz)" for s in [g, *ALIASES_2018.get(g, ())])
                                 + " with its meta_ file")
  raise DataError(no_data_message(data_dir, groups, books_version))


def _complete(src: Source, groups: list[str], name) -> Source:
  missing = [g for g in groups if g not in src.files]
  if missing:
    raise DataError(f"{src.root}: missing {', '.join(name(g) for g in missing)}; place "
                    f"them there, or list the categories you have with "
                    f"--config.data.amazon_reviews.products")
  return src


def _rows(src: Source, group: str, bad: BadRows, on_bad: str):
  if src.kind == "tsv":
    return _tsv_rows(src.files[group][0], bad, on_bad)
  if src.kind == "json":
    return _json_rows(src.files[group][0], bad, on_bad)
  return _tfds_rows(str(src.root), src.tfds_configs[group], bad, on_bad)


# -- streaming, seeded samples -----------------------------------------------------

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


def sample(src: Source, c, groups: list[str]) -> tuple[pd.DataFrame, dict]:
  """Streams every file once; returns the sampled rows (``COLUMNS``, ``group``
  one of ``train``, ``val``, ``test_id``, ``time``, ``product/<Name>``) and
  per-file counts."""
  seed, on_bad = int(c.split_seed), str(c.on_bad)
  id_k = 0 if 0 in (_cap(c.max_train), _cap(c.max_val), _cap(c.max_test)) else (
      _cap(c.max_train) + _cap(c.max_val) + _cap(c.max_test))
  ev_k = _cap(c.max_eval)
  stats: dict = {"read": {}, "skipped": {}, "first_skipped": {}}
  books_years: dict[int, BottomK] = {}
  year_counts: dict[int, int] = {}
  products: dict[str, BottomK] = {}
  for group in groups:
    bad = BadRows()
    label = src.label(group)
    heap = products.setdefault(group, BottomK(ev_k)) if group != BOOKS else None
    books_k = max(id_k, ev_k) if id_k and ev_k else 0
    n = valid = 0
    rows = _rows(src, group, bad, on_bad)
    for where, cust, prod, title, raw_rating, date, raw_date in tqdm(
        rows, desc=f"amazon_reviews {group}", unit=" rows", leave=False, disable=None,
        mininterval=2):
      n += 1
      rating = _rating(raw_rating)
      if rating is None:
        bad.bad(f"{where}: rating {raw_rating!r} is not a whole number of stars in 1-5", on_bad)
        continue
      if date is None:
        bad.bad(f"{where}: date {raw_date!r} is not a date (YYYY-MM-DD or Unix seconds)",
                on_bad)
        continue
      if not cust or not prod:
        bad.bad(f"{where}: empty customer or product id", on_bad)
        continue
      valid += 1
      key = content_key(seed, group, cust, prod, date, rating)
      row = (cust, prod, date, rating, title)
      if group == BOOKS:
        year = int(date[:4])
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
      logging.warning("amazon_reviews: skipped %d malformed row(s) of %d in %s (first: %s)",
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
      out += [(name, *row, key) for key, row in rows]
    time_rows = sorted(books_years[last].rows.items())[: ev_k or None]
    out += [("time", *row, key) for key, row in time_rows]
    stats.update(id_years=id_years, time_year=last, n_id=n_id, n_time=year_counts[last])
  for g, heap in products.items():
    out += [(f"product/{g}", *row, key) for key, row in sorted(heap.rows.items())]
    stats.setdefault("n_product", {})[g] = heap.seen
  df = pd.DataFrame([(g, cu, pr, ti, da, ra, k) for g, (cu, pr, da, ra, ti), k in
                     ((o[0], o[1:6], o[6]) for o in out)], columns=list(COLUMNS))
  if src.kind == "json":
    df = _fill_titles_2018(src, df)
  return df, stats


def _fill_titles_2018(src: Source, df: pd.DataFrame) -> pd.DataFrame:
  titles: dict[str, str] = {}
  for group, (_, meta) in src.files.items():
    name = BOOKS if group == BOOKS else f"product/{group}"
    rows = df["group"].isin(["train", "val", "test_id", "time"]) if group == BOOKS else (
        df["group"] == name)
    titles.update(_titles_2018(meta, set(df.loc[rows, "product_id"])))
  df = df.copy()
  df["title"] = df["product_id"].map(titles).fillna("")
  return df


# -- cache and splits --------------------------------------------------------------

SAMPLING_KEYS = ("split_seed", "id_years", "val_fraction", "test_fraction", "max_train",
                 "max_val", "max_test", "max_eval", "books_version", "on_bad",
                 "max_bad_fraction")


def load_rows(data_dir: str | None, c) -> tuple[pd.DataFrame, dict]:
  groups = [BOOKS, *products_of(c)]
  src = find_source(data_dir, groups, str(c.books_version))
  ident = json.dumps([CACHE_VERSION, src.fingerprint(), groups,
                      {k: c[k] for k in SAMPLING_KEYS}], sort_keys=True, default=str)
  folder = fetch.cache_dir() / "amazon"
  path = folder / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"
  old = sorted(folder.glob("*.pkl")) if folder.is_dir() else []
  if old:
    logging.warning("amazon_reviews: ignoring %d pickle file(s) in %s (the old cache "
                    "format: never read, a pickle can run code); delete them", len(old),
                    folder)
  if path.exists():
    try:
      return read_cache(path)
    except CacheEntryError as e:
      logging.warning("amazon_reviews: cache entry %s %s; rebuilding it", path, e)
  df, stats = sample(src, c, groups)
  try:
    atomic_write_bytes(path, cache_bytes(df, stats))
  except (OSError, UserError) as e:
    logging.warning("amazon_reviews: could not cache the sample in %s (%s)", path, e)
  return df, stats


class CacheEntryError(ValueError):
  """Why a cache entry is not used (said in the rebuild warning)."""


def cache_bytes(df: pd.DataFrame, stats: dict) -> bytes:
  """A header line (format, version, the payload's length and SHA-256), then
  the payload: the sample's columns and the per-file counts as JSON."""
  payload = json.dumps({"columns": {col: df[col].tolist() for col in COLUMNS},
                        "stats": stats}, separators=(",", ":"), default=str).encode()
  head = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "bytes": len(payload),
          "sha256": hashlib.sha256(payload).hexdigest()}
  return json.dumps(head, sort_keys=True).encode() + b"\n" + payload


def read_cache(path: Path) -> tuple[pd.DataFrame, dict]:
  """The sample ``cache_bytes`` wrote; ``CacheEntryError`` for anything else:
  only JSON is parsed, after its hash matched."""
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
    if not (isinstance(cols, dict) and set(cols) == set(COLUMNS) and isinstance(stats, dict)
            and all(isinstance(cols[k], list) for k in COLUMNS)
            and len({len(cols[k]) for k in COLUMNS}) == 1):
      raise ValueError("columns")
    df = pd.DataFrame({k: cols[k] for k in COLUMNS}, columns=list(COLUMNS))
  except (ValueError, KeyError, TypeError):
    raise CacheEntryError("holds no sample of this layout") from None
  return df, stats


def products_of(c) -> list[str]:
  names = [p.strip() for p in str(c.products).split(",") if p.strip()]
  unknown = [p for p in names if p not in PRODUCTS]
  if unknown or not names:
    raise UserError(f"--config.data.amazon_reviews.products={c.products!r}: "
                    f"{'unknown ' + ', '.join(unknown) if unknown else 'empty'}; use a "
                    f"comma-separated subset of {','.join(PRODUCTS)}")
  return names


def sentences(df: pd.DataFrame) -> np.ndarray:
  return np.array([TEMPLATE.format(customer_id=cu, title=ti or "unknown", product_id=pr)
                   for cu, ti, pr in zip(df["customer_id"], df["title"], df["product_id"])])


def to_splits(df: pd.DataFrame, stats: dict, c) -> ShiftSplits:
  df = df.reset_index(drop=True)
  group = df["group"].to_numpy()
  train_rows = np.flatnonzero(group == "train")
  cat, vocab = encode_categories([df[col].to_numpy() for col in SMALL_COLUMNS], train_rows,
                                 len(df))
  text = sentences(df)
  y = df["rating"].to_numpy(np.float32)

  def make(name):
    rows = np.flatnonzero(group == name)
    return Split({"text": text[rows]}, {"cat": cat[rows]}, y[rows])

  ood_names = ["time", *[f"product/{p}" for p in products_of(c)]]
  info = DatasetInfo(
      name="amazon_reviews", task=REGRESSION, num_classes=1, large_spec={"text": True},
      small_spec={"cat_vocab": tuple(vocab)}, modality="text",
      extra={"small_columns": list(SMALL_COLUMNS), **_json_safe(stats)})
  return ShiftSplits(info=info, train=make("train"), val=make("val"), test_id=make("test_id"),
                     ood={g: make(g) for g in ood_names}, aux=aux_tasks(df, text, cat))


def aux_tasks(df: pd.DataFrame, text, cat) -> dict[str, AuxTask]:
  """Model Ratatouille's auxiliary task: the calendar year of an ID rating
  (one of the ``id_years``) from the same sentence, on the ID train and val
  rows; no OOD row is read."""
  group = df["group"].to_numpy()
  id_rows = np.isin(group, ["train", "val"])
  years = df["date"].astype(str).str[:4].to_numpy()
  classes = sorted(set(years[id_rows]))
  if len(classes) < 2:
    return {}
  y = np.searchsorted(np.asarray(classes), years).astype(np.int32)

  def make(name):
    rows = np.flatnonzero(group == name)
    return Split({"text": text[rows]}, {"cat": cat[rows]}, y[rows])
  return {"year": AuxTask("year", f"the rating's year ({', '.join(classes)})",
                          CLASSIFICATION, len(classes), make("train"), make("val"))}


def _json_safe(stats: dict) -> dict:
  return json.loads(json.dumps(stats, default=str))


def load(config, data_dir):
  c = config.data.amazon_reviews
  if str(c.on_bad) not in ("skip", "error"):
    raise UserError(f"--config.data.amazon_reviews.on_bad={c.on_bad!r}: use skip or error")
  df, stats = load_rows(data_dir, c)
  return to_splits(df, stats, c)


DATASETS.add("amazon_reviews", DatasetSpec(
    name="amazon_reviews",
    description="Amazon Review time and product shifts (paper Tables 1, 5, 11): ID = the "
                "oldest 4 years of Books, OOD = its latest year and 7 other categories; "
                "RMSE; needs --data_dir",
    load=load, default_backbone="minilm_l6",
    data_defaults={"split_seed": 0, "id_years": 4, "val_fraction": 0.1, "test_fraction": 0.1,
                   "max_train": 100_000, "max_val": 10_000, "max_test": 10_000,
                   "max_eval": 10_000, "books_version": "v1_02",
                   "products": ",".join(PRODUCTS), "on_bad": "skip",
                   "max_bad_fraction": 0.01},
    presets={
        "smoke": {"data.amazon_reviews.max_train": 200, "data.amazon_reviews.max_val": 100,
                  "data.amazon_reviews.max_test": 50, "data.amazon_reviews.max_eval": 50,
                  "backbones.*.max_len": 48,
                  "batch_size": 50, "epochs": 1},
        "cpu": {"data.amazon_reviews.max_train": 1000, "data.amazon_reviews.max_val": 1000,
                "data.amazon_reviews.max_test": 2000, "data.amazon_reviews.max_eval": 2000,
                "backbones.*.compute_dtype": "bfloat16",
                "backbones.*.max_len": 96,
                "batch_size": 50, "epochs": 2},
        # App. D.3: Adam, batch 100 for Amazon Review.
        "paper": {"batch_size": 100, "epochs": 10, "backbones.*.max_len": 128},
    }))
