"""Amazon Review's datasets: ``amazon_reviews`` (rating prediction from ids and
title, paper Sec. 5) and ``amazon_reviews_text`` (from the review text, App.
E.3), their splits and views.

``amazon_reviews``: inputs customer id, product title, product id; label: the
star rating (1-5, regression, RMSE). The review text and headline are never
inputs (they give the label away, paper Table 8) and never read.

``amazon_reviews_text`` (Table 13, the paper's "sentiment" task): the same
ratings, splits and label; the large model reads the review headline and body,
the small model the customer and product ids as in ``amazon_reviews``.

* ID: ratings of Books from the oldest ``id_years`` (4) calendar years in the
  Books file, split into train / val / test_id (80/10/10) and each part capped
  at ``max_train`` / ``max_val`` / ``max_test`` by a seeded sample;
* OOD group ``time``: Books ratings from the most recent calendar year;
* OOD groups ``product/<Name>`` for Watches, Toys, Sports, Music, Jewelry,
  Furniture, Baby: ratings of that category (every year); each OOD group is a
  seeded sample of at most ``max_eval`` ratings;
* auxiliary task ``year`` (Model Ratatouille): the calendar year of each ID
  train / val rating, from the same sentence.

The files and their formats: ``datasets.amazon_sources``; the seeded samples
and their cache: ``datasets.amazon_sample``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Callable

import numpy as np
import pandas as pd

from benchmark.data import (CLASSIFICATION, REGRESSION, AuxTask, DatasetInfo, ShiftSplits,
                            Split, encode_categories)
from benchmark.errors import UserError
from datasets.amazon_sample import (COLUMNS, TEXT_COLUMNS, CacheEntryError,  # noqa: F401
                                    cache_bytes, content_key, load_rows, read_cache, sample)
from datasets.amazon_sources import (ALIASES_2018, BOOKS, PRODUCTS,  # noqa: F401
                                     find_source, no_data_message, products_of)
from datasets.base import DATASETS, DatasetSpec

NAME, TEXT_NAME = "amazon_reviews", "amazon_reviews_text"
SMALL_COLUMNS = ("customer_id", "product_id")
TEMPLATE = ("When the customer id is {customer_id}, the product title is {title}, and the "
            "product id is {product_id}, what can be the customer rating on this product?:")


def sentences(df: pd.DataFrame) -> np.ndarray:
  """``amazon_reviews``' large-model view: ids and title in ``TEMPLATE``."""
  return np.array([TEMPLATE.format(customer_id=cu, title=ti or "unknown", product_id=pr)
                   for cu, ti, pr in zip(df["customer_id"], df["title"], df["product_id"])])


def review_sentences(df: pd.DataFrame) -> np.ndarray:
  """``amazon_reviews_text``'s large-model view: "<headline>. <body>" (either
  left out when empty). The headline first: it is short and carries most of
  the sentiment, and long bodies are cut at the end (``backbones.*.max_len``)."""
  return np.array([". ".join(t for t in (h, b) if t)
                   for h, b in zip(df["headline"], df["body"])])


@dataclasses.dataclass(frozen=True)
class View:
  """What one Amazon dataset reads: its name (and config section), whether
  its sample holds the review texts, and its large model's sentences."""
  name: str
  text: bool
  sentences: Callable[[pd.DataFrame], np.ndarray]


VIEWS = {NAME: View(NAME, False, sentences), TEXT_NAME: View(TEXT_NAME, True, review_sentences)}


def to_splits(df: pd.DataFrame, stats: dict, c, view: View = VIEWS[NAME]) -> ShiftSplits:
  df = df.reset_index(drop=True)
  group = df["group"].to_numpy()
  train_rows = np.flatnonzero(group == "train")
  cat, vocab = encode_categories([df[col].to_numpy() for col in SMALL_COLUMNS], train_rows,
                                 len(df))
  text = view.sentences(df)
  y = df["rating"].to_numpy(np.float32)

  def make(name):
    rows = np.flatnonzero(group == name)
    return Split({"text": text[rows]}, {"cat": cat[rows]}, y[rows])

  ood_names = ["time", *[f"product/{p}" for p in products_of(c, view.name)]]
  info = DatasetInfo(
      name=view.name, task=REGRESSION, num_classes=1, large_spec={"text": True},
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


def load(config, data_dir, view: View = VIEWS[NAME]):
  c = config.data[view.name]
  if str(c.on_bad) not in ("skip", "error"):
    raise UserError(f"--config.data.{view.name}.on_bad={c.on_bad!r}: use skip or error")
  df, stats = load_rows(data_dir, c, view.text, view.name)
  return to_splits(df, stats, c, view)


def _presets(name: str) -> dict:
  d = f"data.{name}"
  return {
      "smoke": {f"{d}.max_train": 200, f"{d}.max_val": 100, f"{d}.max_test": 50,
                f"{d}.max_eval": 50, "backbones.*.max_len": 48, "batch_size": 50, "epochs": 1},
      # A 2-core CPU: components that train MiniLM see 1,000 ID training
      # ratings (one seeded cut), those on its cached taps or on none every
      # ID training rating the dataset keeps (``max_train``, 100,000).
      "cpu": {"protocol.max_train_large": 1000, f"{d}.max_val": 1000, f"{d}.max_test": 2000,
              f"{d}.max_eval": 2000, "backbones.*.compute_dtype": "bfloat16",
              "backbones.*.max_len": 96, "batch_size": 50, "epochs": 2},
      # App. D.3: Adam, batch 100 for Amazon Review.
      "paper": {"batch_size": 100, "epochs": 10, "backbones.*.max_len": 128},
  }


DATA_DEFAULTS = {"split_seed": 0, "id_years": 4, "val_fraction": 0.1, "test_fraction": 0.1,
                 "max_train": 100_000, "max_val": 10_000, "max_test": 10_000,
                 "max_eval": 10_000, "books_version": "v1_02",
                 "products": ",".join(PRODUCTS), "on_bad": "skip", "max_bad_fraction": 0.01}
DESCRIPTIONS = {
    NAME: "Amazon Review time and product shifts (paper Tables 1, 5, 11): ID = the oldest 4 "
          "years of Books, OOD = its latest year and 7 other categories; RMSE; needs "
          "--data_dir",
    TEXT_NAME: "Amazon Review rating from the review text (paper Table 13): the same ratings "
               "and splits as amazon_reviews, the large model reading the review headline "
               "and body, the small model the ids; RMSE; needs --data_dir",
}

for _view in VIEWS.values():
  DATASETS.add(_view.name, DatasetSpec(
      name=_view.name, description=DESCRIPTIONS[_view.name],
      load=functools.partial(load, view=_view), default_backbone="minilm_l6",
      data_defaults=dict(DATA_DEFAULTS), presets=_presets(_view.name)))
