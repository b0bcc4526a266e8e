"""``tabular``: a benchmark read from a CSV the user supplies.

Columns: ``cat_*`` (categorical), ``num_*`` (numeric), ``label`` and ``split``,
whose values are ``pretrain``, ``train``, ``val``, ``test_id`` or
``ood:<group>``, and ``aux:<task>:train`` / ``aux:<task>:val`` for the rows
of an auxiliary task (Model Ratatouille: other labels on inputs of the same
kind; each auxiliary task has its own label values).
``pretrain`` rows pre-train the ``tabular_mlp`` large model.
Both views (large and small model) are the same columns: categorical values
become ids (0 = unseen in pretrain/train rows), numeric columns are
standardised with the ID train rows' statistics.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np
import pandas as pd

from benchmark.data import (CLASSIFICATION, REGRESSION, AuxTask, DatasetInfo, ShiftSplits,
                            Split, encode_categories)
from benchmark.errors import DataError, UserError
from datasets.base import DATASETS, DatasetSpec

FIXED_SPLITS = ("pretrain", "train", "val", "test_id")


def read_csv(path: str) -> pd.DataFrame:
  if not path:
    raise UserError("dataset tabular reads a CSV: pass --data_dir FILE.csv")
  if os.path.isdir(path):
    raise UserError(f"--data_dir {path} is a folder; dataset tabular needs the CSV "
                    f"file itself: --data_dir FILE.csv")
  if not os.path.exists(path):
    raise UserError(f"--data_dir {path} does not exist; pass the CSV file with "
                    f"--data_dir FILE.csv")
  try:
    df = pd.read_csv(path, dtype={"split": str}, keep_default_na=True)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: not a readable CSV ({str(e).splitlines()[0]}); "
                    f"fix the file or regenerate it") from e
  except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:  # e.g. a cut .csv.gz
    raise DataError(f"{path}: truncated or corrupt compressed file ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else 'no detail'}); "
                    f"write or download it again") from e
  return df


def frame_to_splits(df: pd.DataFrame, name: str, *, task: str = "auto",
                    standardize: bool = True, source: str = "CSV",
                    missing: str | None = None, min_ood_rows: int = 0) -> ShiftSplits:
  """The one path every tabular-schema benchmark goes through. ``missing``
  says what empty ``num_*`` cells do (``error``, ``drop`` the row, ``mean``
  of ID train; None: an error naming no option); OOD groups of fewer than
  ``min_ood_rows`` rows are left out of the ``ood`` mean when others remain.
  What the data's shape makes doubtful is in the splits' ``notes``."""
  absent = [c for c in ("label", "split") if c not in df.columns]
  cats = sorted(c for c in df.columns if c.startswith("cat_"))
  nums = sorted(c for c in df.columns if c.startswith("num_"))
  if absent:
    raise DataError(f"{source}: missing column(s) {', '.join(absent)}; a tabular CSV "
                    f"needs label, split and cat_*/num_* feature columns")
  if not cats and not nums:
    raise DataError(f"{source}: no feature columns; name them cat_<name> "
                    f"(categorical) or num_<name> (numeric)")
  other = [c for c in df.columns if c not in ("label", "split", *cats, *nums)]
  if other:
    raise DataError(f"{source}: unexpected column(s) {', '.join(other[:5])}; rename "
                    f"features to cat_<name> or num_<name>, or drop them")
  if df["split"].isna().any():
    row = int(np.flatnonzero(df["split"].isna())[0]) + 2
    raise DataError(f"{source}: empty split on line {row}; every row needs a split "
                    f"(pretrain, train, val, test_id, ood:<group>, aux:<task>:train|val)")
  split = df["split"].astype(str).str.strip()
  bad = sorted({s for s in split.unique()
                if s not in FIXED_SPLITS and not (s.startswith("ood:") and len(s) > 4)
                and aux_split(s) is None})
  if bad:
    raise DataError(f"{source}: unknown split value(s) {', '.join(map(repr, bad[:5]))}; "
                    f"use pretrain, train, val, test_id, ood:<group> or "
                    f"aux:<task>:train / aux:<task>:val")
  if df["label"].isna().any():
    row = int(np.flatnonzero(df["label"].isna())[0]) + 2
    raise DataError(f"{source}: empty label on line {row}; every row needs a label")
  notes: dict[str, str] = {}
  df, split = fill_missing(df, split, nums, missing, source, notes)

  is_aux = split.str.startswith("aux:").to_numpy()
  y, task, num_classes, classes = labels(df["label"][~is_aux], task, source, name)
  y_all = np.zeros(len(df), y.dtype)
  y_all[~is_aux] = y
  extra = {} if classes is None else {"classes": classes}
  fit_rows = split.isin(["pretrain", "train"]).to_numpy()
  cat, vocab = encode_categories([df[c].to_numpy() for c in cats], fit_rows, len(df))
  num = np.zeros((len(df), 0), np.float32)
  if nums:
    try:
      num = df[nums].to_numpy(np.float64)
    except (ValueError, TypeError):
      raise DataError(f"{source}: a num_* column holds non-numbers; fix it or rename "
                      f"it cat_*")
    if not np.all(np.isfinite(num)):
      r, col = np.argwhere(~np.isfinite(num))[0]
      raise DataError(f"{source}: {nums[col]} is not finite ({num[r, col]}) on line "
                      f"{df.index[r] + 2}; fix the value")
    if standardize:
      tr = num[(split == "train").to_numpy()]
      mu, sd = tr.mean(0), tr.std(0)
      num = (num - mu) / np.where(sd > 1e-8, sd, 1.0)
    num = num.astype(np.float32)

  spec = {}
  if nums:
    spec["num"] = len(nums)
  if cats:
    spec["cat_vocab"] = tuple(vocab)
  extra["columns"] = {"num": nums, "cat": cats}
  info = DatasetInfo(name=name, task=task, num_classes=num_classes, large_spec=spec,
                     small_spec=spec, modality="tabular", extra=extra)

  def make(mask, labels_of=None) -> Split:
    mask = np.asarray(mask)
    view = {}
    if nums:
      view["num"] = num[mask]
    if cats:
      view["cat"] = cat[mask]
    return Split(view, view, y_all[mask] if labels_of is None else labels_of)

  groups = sorted(s[4:] for s in split.unique() if s.startswith("ood:"))
  pre = (split == "pretrain").to_numpy()
  if classes is not None:
    unseen_labels(y_all, split, is_aux, classes, notes)
  excluded = small_groups(split, groups, min_ood_rows, name, notes)
  return ShiftSplits(
      info=info, train=make(split == "train"), val=make(split == "val"),
      test_id=make(split == "test_id"),
      ood={g: make(split == f"ood:{g}") for g in groups},
      pretrain=make(pre) if pre.any() else None, aux=aux_tasks(df, split, make, source, name),
      notes=notes, ood_excluded=excluded)


def fill_missing(df, split, nums, missing, source, notes):
  """Empty ``num_*`` cells: an error naming ``data.tabular.missing``, or the
  rows dropped, or the ID train mean filled in (said in ``notes``)."""
  if not nums:
    return df, split
  empty = df[nums].isna().to_numpy()
  if not empty.any():
    return df, split
  r, col = np.argwhere(empty)[0]
  rows, cells = int(empty.any(1).sum()), int(empty.sum())
  if missing not in ("drop", "mean"):
    if missing not in (None, "error"):
      raise UserError(f"--config.data.tabular.missing={missing!r}: use error, drop or mean")
    fix = ("" if missing is None else "; or pass --config.data.tabular.missing=drop (leave "
           "those rows out) or --config.data.tabular.missing=mean (the ID train mean)")
    raise DataError(f"{source}: {nums[col]} is empty on line {r + 2} ({cells} empty "
                    f"num_* cell(s) in {rows} row(s)); fill them{fix}")
  if missing == "drop":
    keep = ~empty.any(1)
    notes[""] = (f"{rows} row(s) with empty num_* cells left out "
                 f"(data.tabular.missing=drop)")
    return df[keep], split[keep]
  train = (split == "train").to_numpy()
  means = df.loc[train, nums].mean()
  if means.isna().any():
    bad = means.index[means.isna()][0]
    raise DataError(f"{source}: {bad} is empty in every ID train row: no mean to fill in; "
                    f"fill it or use --config.data.tabular.missing=drop")
  notes[""] = (f"{cells} empty num_* cell(s) in {rows} row(s) filled with the ID train "
               f"mean (data.tabular.missing=mean)")
  return df.fillna({c: means[c] for c in nums}), split


def unseen_labels(y, split, is_aux, classes, notes) -> None:
  """A class that occurs outside ID train but never in it: no model learns
  it; said on each split it occurs in."""
  train = (split == "train").to_numpy()
  seen = set(np.unique(y[train]).tolist())
  for where in sorted(set(split[~is_aux]) - {"train", "pretrain"}):
    rows = (split == where).to_numpy() & ~is_aux
    lost = sorted(set(np.unique(y[rows]).tolist()) - seen)
    if lost:
      n = int(np.isin(y[rows], lost).sum())
      key = f"ood/{where[4:]}" if where.startswith("ood:") else where
      names = ", ".join(repr(classes[i]) for i in lost)
      one = len(lost) == 1
      notes[key] = (f"label value{'' if one else 's'} {names} occur{'s' if one else ''} in "
                    f"{where} ({n} row(s)) but never in the ID train rows: no model can "
                    f"learn {'it' if one else 'them'}")


def small_groups(split, groups, min_rows: int, name: str, notes) -> tuple[str, ...]:
  """OOD groups of fewer than ``min_rows`` rows, left out of the ``ood`` mean
  (where it weighs every group alike) when larger groups remain."""
  sizes = {g: int((split == f"ood:{g}").sum()) for g in groups}
  small = [g for g in groups if sizes[g] < min_rows]
  if not small or len(small) == len(groups):
    return ()
  for g in small:
    notes[f"ood/{g}"] = (f"OOD group {g!r} has {sizes[g]} row(s), fewer than "
                         f"data.{name}.min_ood_rows={min_rows}: left out of the ood mean "
                         f"(--config.data.{name}.min_ood_rows=0 keeps it)")
  notes["ood"] = f"mean over OOD groups of {min_rows}+ rows (not {', '.join(small)})"
  return tuple(small)


def aux_split(value: str) -> tuple[str, str] | None:
  """``aux:<task>:train`` -> ("<task>", "train"); None for any other value."""
  parts = value.split(":")
  if len(parts) == 3 and parts[0] == "aux" and parts[1] and parts[2] in ("train", "val"):
    return parts[1], parts[2]
  return None


def labels(label_raw: pd.Series, task: str, source: str, name: str):
  """Label array, task (``auto`` resolved), number of classes and class names
  (None for regression)."""
  if label_raw.dtype == object:  # a column mixing auxiliary labels: numbers read as text
    as_num = pd.to_numeric(label_raw, errors="coerce")
    if as_num.notna().all():
      label_raw = as_num
  if task == "auto":
    numeric = pd.api.types.is_numeric_dtype(label_raw)
    integral = numeric and np.all(np.mod(label_raw.to_numpy(np.float64), 1) == 0)
    task = REGRESSION if numeric and not integral else CLASSIFICATION
  if task not in (REGRESSION, CLASSIFICATION):
    raise UserError(f"task {task!r}: use auto, regression or classification")
  if task == REGRESSION:
    try:
      return label_raw.to_numpy(np.float32), task, 1, None
    except (ValueError, TypeError):
      raise DataError(f"{source}: non-numeric labels with task=regression; fix the "
                      f"labels or set --config.data.{name}.task=classification")
  uniq = label_raw.unique().tolist()
  numeric = pd.api.types.is_numeric_dtype(label_raw)
  classes = sorted(uniq) if numeric else sorted(uniq, key=str)
  y = label_raw.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int32)
  if len(classes) < 2:
    raise DataError(f"{source}: one label value only; classification needs two")
  return y, task, len(classes), [str(c) for c in classes]


def aux_tasks(df, split, make, source: str, name: str) -> dict[str, AuxTask]:
  """The auxiliary tasks of ``aux:<task>:train|val`` rows; each task's labels
  are read on their own (``auto``: regression for non-integral numbers)."""
  parsed = split.map(lambda v: aux_split(v) or ("", ""))
  out = {}
  for t in sorted({a for a, _ in parsed if a}):
    rows = {part: (parsed.map(lambda p: p == (t, part))).to_numpy() for part in ("train", "val")}
    for part, m in rows.items():
      if not m.any():
        raise DataError(f"{source}: auxiliary task {t!r} has no aux:{t}:{part} rows; "
                        f"every auxiliary task needs train and val rows")
    both = rows["train"] | rows["val"]
    y, task, k, classes = labels(df["label"][both], "auto", f"{source} (aux:{t})", name)
    y_all = np.zeros(len(df), y.dtype)
    y_all[both] = y
    out[t] = AuxTask(t, f"{t} ({task}{'' if classes is None else f', {k} classes'})",
                     task, k, make(rows["train"], y_all[rows["train"]]),
                     make(rows["val"], y_all[rows["val"]]))
  return out


def load(config, data_dir):
  c = config.data.tabular
  return frame_to_splits(read_csv(data_dir), "tabular", task=c.task,
                         standardize=c.standardize, source=data_dir, missing=str(c.missing),
                         min_ood_rows=int(c.min_ood_rows))


DATASETS.add("tabular", DatasetSpec(
    name="tabular", description="a CSV you supply (--data_dir FILE.csv): cat_*, num_*, "
    "label, split in {pretrain, train, val, test_id, ood:<group>}",
    load=load, default_backbone="tabular_mlp",
    data_defaults={"task": "auto", "standardize": True, "missing": "error",
                   "min_ood_rows": 20}))
