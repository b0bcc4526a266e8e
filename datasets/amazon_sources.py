"""Amazon Review's on-disk formats: finds a folder's review files and streams
each one's ratings as raw rows (paper Sec. 5, App. D.1).

Formats, all holding the same ratings:
* the Amazon Customer Reviews TSV files
  ``amazon_reviews_us_<Category>_v1_00.tsv(.gz)`` (Books:
  ``amazon_reviews_us_Books_<books_version>.tsv(.gz)``, ``v1_02`` by default);
* a TFDS data dir with ``amazon_us_reviews/<Category>_v1_00`` (Books:
  ``Books_<books_version>``) prepared;
* Amazon Review Data 2018 (Ni et al.) JSON lines, ``<Category>.json(.gz)``
  (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``) with titles from
  ``meta_<Category>.json(.gz)`` (``asin``, ``title``); that release names some
  categories differently (``ALIASES_2018``).

The review headline and body (TSV ``review_headline`` / ``review_body``, TFDS
``data/review_headline`` / ``data/review_body``, 2018 ``summary`` /
``reviewText``) are read only when a reader asks for them (``text=True``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Iterator, NamedTuple

from benchmark import readers
from benchmark.errors import DataError, UserError

BOOKS = "Books"
PRODUCTS = ("Watches", "Toys", "Sports", "Music", "Jewelry", "Furniture", "Baby")
TSV_COLUMNS = ("customer_id", "product_id", "product_title", "star_rating", "review_date")
TSV_TEXT_COLUMNS = ("review_headline", "review_body")
JSON_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
# Amazon Review Data 2018 names these categories differently; it has no
# Watches, Jewelry, Furniture or Baby category of its own (place files named
# after the paper's category, e.g. a filtered Clothing_Shoes_and_Jewelry).
ALIASES_2018 = {"Toys": ("Toys_and_Games",), "Sports": ("Sports_and_Outdoors",),
                "Music": ("CDs_and_Vinyl", "Digital_Music")}


class RawRow(NamedTuple):
  """One rating as a file holds it (``date`` None when unparsable; ``title``
  None in 2018 review files; ``headline`` / ``body`` None unless asked for)."""
  where: str
  customer: str
  product: str
  title: str | None
  raw_rating: object
  date: str | None
  raw_date: object
  headline: str | None = None
  body: str | None = None


# -- one rating --------------------------------------------------------------------

@dataclasses.dataclass
class BadRows:
  """Rows of one file skipped (``on_bad=skip``) and the first reason;
  ``dataset`` names the config section the fix is given under."""
  dataset: str = "amazon_reviews"
  skipped: int = 0
  first: str = ""

  def bad(self, msg: str, on_bad: str) -> None:
    if on_bad == "error":
      raise DataError(f"{msg} (or --config.data.{self.dataset}.on_bad=skip to skip and "
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


def rating_of(raw) -> int | None:
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


def _one_line(text) -> str:
  """A review text as one line (the files' texts hold tabs, newlines, ``<br />``)."""
  return " ".join(str(text or "").replace("<br />", " ").split())


# -- the formats -------------------------------------------------------------------

def _tsv_rows(path: Path, bad: BadRows, on_bad: str, text: bool) -> Iterator[RawRow]:
  c = readers.Counter()
  fix = ("expected the Amazon Customer Reviews TSV header (marketplace, customer_id, "
         "review_id, product_id, ...)")
  columns = TSV_COLUMNS + (TSV_TEXT_COLUMNS if text else ())
  for r in readers.iter_tsv(path, columns, on_bad="skip", counter=c, fix=fix):
    yield RawRow(f"{path} line {c.line}", r["customer_id"], r["product_id"],
                 r["product_title"], r["star_rating"], _iso_date(r["review_date"]),
                 r["review_date"], *((_one_line(r["review_headline"]),
                                      _one_line(r["review_body"])) if text else ()))
  bad.merge_reader(c, on_bad)


def _json_rows(path: Path, bad: BadRows, on_bad: str, text: bool) -> Iterator[RawRow]:
  c = readers.Counter()
  for obj in readers.iter_jsonl(path, JSON_KEYS, on_bad="skip", counter=c):
    # 2018 reviews without text have no reviewText / summary key at all.
    yield RawRow(f"{path} line {c.line}", str(obj["reviewerID"]), str(obj["asin"]), None,
                 obj["overall"], _unix_date(obj["unixReviewTime"]), obj["unixReviewTime"],
                 *((_one_line(obj.get("summary")), _one_line(obj.get("reviewText")))
                   if text else ()))
  bad.merge_reader(c, on_bad)


def _tfds_rows(data_dir: str, config_name: str, bad: BadRows, on_bad: str,
               text: bool) -> Iterator[RawRow]:
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
    yield RawRow(f"{data_dir}/{name} example {i}", d["customer_id"].decode(),
                 d["product_id"].decode(), d["product_title"].decode(), int(d["star_rating"]),
                 _iso_date(date), date,
                 *((_one_line(d["review_headline"].decode()),
                    _one_line(d["review_body"].decode())) if text else ()))


def titles_2018(path: Path, asins: set[str]) -> dict[str, str]:
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

  def rows(self, group: str, bad: BadRows, on_bad: str, text: bool = False
           ) -> Iterator[RawRow]:
    """``group``'s ratings, streamed; with their headline and body if ``text``."""
    if self.kind == "tsv":
      return _tsv_rows(self.files[group][0], bad, on_bad, text)
    if self.kind == "json":
      return _json_rows(self.files[group][0], bad, on_bad, text)
    return _tfds_rows(str(self.root), self.tfds_configs[group], bad, on_bad, text)


def _versions(group: str, books_version: str) -> str:
  return f"{group}_{books_version}" if group == BOOKS else f"{group}_v1_00"


def no_data_message(data_dir: str | None, groups: list[str], books_version: str,
                    dataset: str = "amazon_reviews") -> str:
  tsv = ",".join(_versions(g, books_version) for g in groups)
  return (f"{dataset} needs the Amazon review files, which are never downloaded at run "
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


def find_source(data_dir: str | None, groups: list[str], books_version: str,
                dataset: str = "amazon_reviews") -> Source:
  if not data_dir:
    raise UserError(no_data_message(data_dir, groups, books_version, dataset))
  root = Path(data_dir)
  if not root.is_dir():
    raise UserError(f"--data_dir {data_dir} does not exist; "
                    + no_data_message(data_dir, groups, books_version, dataset))
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
                        f"--config.data.{dataset}.books_version={v}")
      return _complete(Source("tsv", folder, {g: [p] for g, p in found.items() if p}, {}),
                       groups, lambda g: f"amazon_reviews_us_{_versions(g, books_version)}"
                                         f".tsv(.gz)", dataset)
    if (folder / "amazon_us_reviews").is_dir():
      configs = {g: _versions(g, books_version) for g in groups}
      files = {}
      for g, c in configs.items():
        d = folder / "amazon_us_reviews" / c
        if d.is_dir():
          files[g] = sorted(p for p in d.rglob("*") if p.is_file())
      return _complete(Source("tfds", folder, files, configs), groups,
                       lambda g: f"amazon_us_reviews/{configs[g]} (TFDS)", dataset)
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
                                 + " with its meta_ file", dataset)
  raise DataError(no_data_message(data_dir, groups, books_version, dataset))


def _complete(src: Source, groups: list[str], name, dataset: str) -> Source:
  missing = [g for g in groups if g not in src.files]
  if missing:
    raise DataError(f"{src.root}: missing {', '.join(name(g) for g in missing)}; place "
                    f"them there, or list the categories you have with "
                    f"--config.data.{dataset}.products")
  return src


def products_of(c, dataset: str = "amazon_reviews") -> list[str]:
  """The OOD product categories ``c.products`` names."""
  names = [p.strip() for p in str(c.products).split(",") if p.strip()]
  unknown = [p for p in names if p not in PRODUCTS]
  if unknown or not names:
    raise UserError(f"--config.data.{dataset}.products={c.products!r}: "
                    f"{'unknown ' + ', '.join(unknown) if unknown else 'empty'}; use a "
                    f"comma-separated subset of {','.join(PRODUCTS)}")
  return names
