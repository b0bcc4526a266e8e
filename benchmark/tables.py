"""Pure functions from store records to tables: pandas frames, then CSV and
LaTeX (``Styler.to_latex``), mean ± std over seeds.

``std`` is the sample standard deviation over seeds (ddof=1), blank for one
seed. OOD aggregates (``ood_aggregates``) are unweighted means over groups,
computed per seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.store import atomic_write_text

COLUMNS = ["dataset", "method", "split", "metric", "mean", "std", "n_seeds", "n_examples",
           "note"]
LOWER_IS_BETTER = {"rmse"}


def ood_aggregates(keys: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, list[str]]:
  """Aggregate splits -> the OOD groups they average, unweighted (how the
  paper's Table 1 follows from its per-group Tables 9-11).

  Groups ``ood/<family>/<name>`` (e.g. ``ood/product/Watches``) average into
  ``ood/<family>s`` (``ood/products``). ``ood`` averages the single-level
  groups (e.g. twelve genres) and exists only when there is no family: a
  dataset with a family and a single-level group (``ood/time``) reports them
  apart, as the paper does. Groups in ``exclude`` (names, e.g. a group of
  a few rows, ``ShiftSplits.ood_excluded``) stay out of ``ood``."""
  singles = [k for k in keys if k.startswith("ood/") and k.count("/") == 1
             and k[4:] not in exclude]
  families: dict[str, list[str]] = {}
  for k in keys:
    if k.startswith("ood/") and k.count("/") == 2:
      families.setdefault(f"ood/{k.split('/')[1]}s", []).append(k)
  out = {"ood": singles} if singles and not families else {}
  out.update(families)
  return out


def headline_ood(keys: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
  """The groups one OOD number averages when a figure needs one per dataset:
  ``ood`` when it exists, else the single-level groups (e.g. a time shift
  beside a product family, as in the paper's Table 5)."""
  aggs = ood_aggregates(keys, exclude)
  if "ood" in aggs:
    return aggs["ood"]
  return [k for k in keys if k.startswith("ood/") and k.count("/") == 1] or \
      [k for k in keys if k.startswith("ood/")]


def split_order(records: Sequence[Mapping]) -> list[str]:
  """``test_id``, ``ood`` (if defined), single-level groups, then each family's
  aggregate followed by its groups."""
  groups = []
  for r in records:
    for k in r.get("n_examples", {}):
      if k.startswith("ood/") and k not in groups:
        groups.append(k)
  aggs = ood_aggregates(groups)
  order = ["test_id"] + (["ood"] if "ood" in aggs else [])
  order += [k for k in groups if k.count("/") == 1]
  for agg, members in aggs.items():
    if agg != "ood":
      order += [agg, *members]
  return order


def dataset_frame(records: Sequence[Mapping], methods: Sequence[str] | None = None,
                  exclude: Sequence[str] = (), notes: Mapping[str, str] | None = None,
                  method_notes: Mapping[str, str] | None = None) -> pd.DataFrame:
  """Long table: one row per (dataset, method, split). ``exclude``: OOD
  groups left out of ``ood``; ``note`` holds ``notes`` by split ("" = every
  row) and ``method_notes`` by method."""
  rows = []
  order = split_order(records)
  aggs = ood_aggregates(order, exclude)
  notes, method_notes = notes or {}, method_notes or {}
  by_method: dict[tuple[str, str], list[Mapping]] = {}
  for r in records:
    by_method.setdefault((r["dataset"], r["method"]), []).append(r)
  keys = list(by_method)
  if methods is not None:
    keys.sort(key=lambda k: (methods.index(k[1]) if k[1] in methods else len(methods)))
  for (ds, m) in keys:
    recs = sorted(by_method[(ds, m)], key=lambda r: r["seed"])
    ok = [r for r in recs if r.get("status") == "ok"]
    metric = recs[0]["metric"]
    n_ex = recs[0].get("n_examples", {})
    for split in order:
      if split in aggs:
        vals = [np.mean([r["scores"][k] for k in aggs[split]]) for r in ok
                if all(k in r["scores"] for k in aggs[split])]
        n = sum(n_ex.get(k, 0) for k in aggs[split])
      else:
        vals = [r["scores"][split] for r in ok if split in r["scores"]]
        n = n_ex.get(split, 0)
      mean = float(np.mean(vals)) if vals else np.nan
      std = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
      note = "; ".join(t for t in (notes.get(""), notes.get(split), method_notes.get(m)) if t)
      rows.append([ds, m, split, metric, mean, std, len(vals), int(n), note])
  return pd.DataFrame(rows, columns=COLUMNS)


def identical_across_seeds(frame: pd.DataFrame) -> list[str]:
  """Methods whose every split has the same score at every seed (std 0 over
  two or more seeds): the seeds changed nothing, which a table's ``± 0.000``
  would not say."""
  multi = frame[frame["n_seeds"] > 1]
  return [m for m, rows in multi.groupby("method", sort=False)
          if rows["std"].notna().all() and (rows["std"] == 0).all()]


def _cell(mean: float, std: float) -> str:
  if np.isnan(mean):
    return "failed"
  return f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def wide(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
  """Methods as rows, splits as columns, ``mean ± std`` cells."""
  cells = frame.assign(cell=[_cell(m, s) for m, s in zip(frame["mean"], frame["std"])])
  splits = list(dict.fromkeys(frame["split"]))
  methods = list(dict.fromkeys(frame["method"]))
  w = cells.pivot(index="method", columns="split", values="cell").loc[methods, splits]
  if labels:
    w.index = [labels.get(m, m) for m in w.index]
  w.index.name = None
  w.columns.name = None
  return w


def _rank_styles(frame: pd.DataFrame) -> pd.DataFrame:
  """LaTeX styles: best per column in bold, second underlined."""
  splits = list(dict.fromkeys(frame["split"]))
  methods = list(dict.fromkeys(frame["method"]))
  styles = pd.DataFrame("", index=methods, columns=splits)
  for s in splits:
    col = frame[frame["split"] == s].set_index("method")["mean"].dropna()
    if col.empty:
      continue
    lower = frame[frame["split"] == s]["metric"].iloc[0] in LOWER_IS_BETTER
    ranked = col.sort_values(ascending=lower).index.tolist()
    styles.loc[ranked[0], s] = "textbf:--rwrap;"
    if len(ranked) > 1:
      styles.loc[ranked[1], s] = "underline:--rwrap;"
  return styles


def latex_escape(text: str) -> str:
  for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
               ("#", r"\#")):
    text = text.replace(a, b)
  return text


def to_latex(frame: pd.DataFrame, labels: Mapping[str, str] | None = None,
             caption: str | None = None) -> str:
  w = wide(frame).map(lambda c: c.replace("±", r"$\pm$"))
  styles = _rank_styles(frame)
  if labels:
    w.index = styles.index = [labels.get(m, m) for m in w.index]
  w.columns = styles.columns = [latex_escape(c) for c in w.columns]
  w.index = styles.index = [latex_escape(str(i)) for i in w.index]
  styler = w.style.apply(lambda _: styles, axis=None)
  return styler.to_latex(hrules=True, caption=caption, column_format="l" + "c" * w.shape[1])


def write(frame: pd.DataFrame, stem: Path, labels: Mapping[str, str] | None = None,
          caption: str | None = None) -> tuple[Path, Path]:
  csv_path, tex_path = stem.with_suffix(".csv"), stem.with_suffix(".tex")
  atomic_write_text(csv_path, frame.to_csv(index=False, float_format="%.6f",
                                           lineterminator="\n"))
  atomic_write_text(tex_path, to_latex(frame, labels, caption))
  return csv_path, tex_path
