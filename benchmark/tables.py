"""Pure functions from store records to tables: pandas frames, then CSV and
LaTeX (``Styler.to_latex``), the mean over seeds with its 95% interval.

``std`` is the sample standard deviation over seeds (ddof=1), blank for one
seed; ``ci_low``/``ci_high`` the bootstrap interval over test examples and
seeds (``benchmark.results``). OOD aggregates (``ood_aggregates``) are
unweighted means over groups, computed per seed, with their example-weighted
and worst-group companions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark import results
from benchmark.results import LOWER_IS_BETTER, MIN_GROUP_SIZE, ood_aggregates
from benchmark.store import atomic_write_text

COLUMNS = ["dataset", "method", "split", "metric", "mean", "std", "ci_low", "ci_high",
           "n_seeds", "n_examples", "reference", "diff_ref", "diff_ref_low", "diff_ref_high",
           "ref_significant", "bold", "note"]
# Decimals a table shows per metric (``report.decimals`` overrides them).
DECIMALS = {"rmse": 3, "acc": 1}


def headline_ood(keys: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
  """The groups one OOD number averages when a figure needs one per dataset:
  ``ood`` when it exists, else the single-level groups (e.g. a time shift
  beside a product family, as in the paper's Table 5)."""
  aggs = ood_aggregates(keys, exclude)
  if "ood" in aggs:
    return aggs["ood"]
  return [k for k in keys if k.startswith("ood/") and k.count("/") == 1] or \
      [k for k in keys if k.startswith("ood/")]


def split_order(records: Sequence[Mapping], exclude: Sequence[str] = ()) -> list[str]:
  """``test_id``, ``ood`` (if defined) and its weighted and worst companions,
  single-level groups, then each family's aggregate (and companions)
  followed by its groups."""
  groups = []
  for r in records:
    for k in r.get("n_examples", {}):
      if k.startswith("ood/") and k not in groups:
        groups.append(k)
  derived = results.summaries(groups, exclude)
  order = ["test_id"] + [k for k in derived if k == "ood" or k.startswith("ood:")]
  order += [k for k in groups if k.count("/") == 1]
  for agg, (how, members) in derived.items():
    if how == "mean" and agg != "ood":
      order += [agg] + [k for k in derived if k.startswith(agg + ":")] + members
  return order + [k for k in groups if k not in order]  # groups every aggregate left out


def dataset_frame(records: Sequence[Mapping], methods: Sequence[str] | None = None,
                  exclude: Sequence[str] = (), notes: Mapping[str, str] | None = None,
                  method_notes: Mapping[str, str] | None = None,
                  comparison: pd.DataFrame | None = None,
                  min_group_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
  """Long table: one row per (dataset, method, split), from the tidy frame
  of ``records`` (``results.tidy``). ``exclude``: OOD groups left out of the
  aggregates, as are groups of fewer than ``min_group_size`` examples (said
  in their ``note``); ``note`` holds ``notes`` by split ("" = every row) and
  ``method_notes`` by method; ``comparison`` (``results.compare``) gives
  the intervals, the paired differences and ``bold``."""
  rows = []
  notes, method_notes = dict(notes or {}), method_notes or {}
  sizes: dict[str, int] = {}
  for r in records:
    sizes.update(r.get("n_examples", {}))
  small = results.small_groups(sizes, min_group_size)
  for k in small:
    notes[k] = "; ".join(t for t in (notes.get(k), f"fewer than {min_group_size} examples: "
                                     f"not in the OOD aggregates") if t)
  order = split_order(records, [*exclude, *small])
  long = results.tidy(records, exclude, min_group_size)
  by_method: dict[tuple[str, str], list[Mapping]] = {}
  for r in records:
    by_method.setdefault((r["dataset"], r["method"]), []).append(r)
  keys = list(by_method)
  if methods is not None:
    keys.sort(key=lambda k: (methods.index(k[1]) if k[1] in methods else len(methods)))
  cmp = ({} if comparison is None else
         {(r["dataset"], r["method"], r["split"]): r
          for r in comparison.to_dict("records")})
  for (ds, m) in keys:
    recs = by_method[(ds, m)]
    metric = recs[0]["metric"]
    n_ex = recs[0].get("n_examples", {})
    mine = long[(long["dataset"] == ds) & (long["method"] == m) & (long["status"] == "ok")]
    for split in order:
      vals = mine.loc[mine["split"] == split].sort_values("seed")["value"].tolist()
      n = mine.loc[mine["split"] == split, "n_examples"]
      n = int(n.iloc[0]) if len(n) else int(n_ex.get(split, 0))
      mean = float(np.mean(vals)) if vals else np.nan
      std = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
      c = cmp.get((ds, m, split), {})
      note = "; ".join(t for t in (notes.get(""), notes.get(split), method_notes.get(m)) if t)
      rows.append([ds, m, split, metric, mean, std, c.get("ci_low", np.nan),
                   c.get("ci_high", np.nan), len(vals), n, c.get("reference"),
                   c.get("diff_ref", np.nan), c.get("diff_ref_low", np.nan),
                   c.get("diff_ref_high", np.nan), c.get("ref_significant", False),
                   c.get("bold", False), note])
  return pd.DataFrame(rows, columns=COLUMNS)


def seeds_frame(records: Sequence[Mapping], exclude: Sequence[str] = (),
                min_group_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
  """The per-seed scores behind a table (``<table>.seeds.csv``): one row per
  method, split and seed."""
  long = results.tidy(records, exclude, min_group_size)
  # One order whether the records come from memory or back from the store
  # (whose JSON sorts their keys): methods as given, then split, then seed.
  first = {m: i for i, m in enumerate(dict.fromkeys(long["method"]))}
  long = long.assign(_m=long["method"].map(first)).sort_values(
      ["dataset", "_m", "split", "seed"], kind="stable")
  return long[["dataset", "method", "split", "seed", "metric", "value", "n_examples",
               "status", "key"]].reset_index(drop=True)


def identical_across_seeds(frame: pd.DataFrame) -> list[str]:
  """Methods whose every split has the same score at every seed (std 0 over
  two or more seeds): the seeds changed nothing, which a table's ``± 0.000``
  would not say."""
  multi = frame[frame["n_seeds"] > 1]
  return [m for m, rows in multi.groupby("method", sort=False)
          if rows["std"].notna().all() and (rows["std"] == 0).all()]


def cell_text(mean: float, std: float, lo: float = np.nan, hi: float = np.nan,
              decimals: int = 3) -> str:
  """``mean [lo, hi]`` (the confidence interval), else ``mean ± std`` (no
  stored predictions), else ``mean`` (one seed)."""
  if np.isnan(mean):
    return "failed"
  f = f"{{:.{decimals}f}}".format
  if not np.isnan(lo):
    return f"{f(mean)} [{f(lo)}, {f(hi)}]"
  return f(mean) if np.isnan(std) else f"{f(mean)} ± {f(std)}"


def decimals_of(metric: str, decimals: Mapping[str, int] | None = None) -> int:
  return int({**DECIMALS, **(decimals or {})}.get(metric, 3))


def shown_splits(frame: pd.DataFrame) -> list[str]:
  """The splits a wide table shows: all but an aggregate of one group (the
  group's own column says the same); such an aggregate is the one without
  ``:worst`` companion (``results.summaries``)."""
  splits = list(dict.fromkeys(frame["split"]))
  aggs = [k for k in splits if k == "ood" or (k in _aggregates(splits))]
  single = {a for a in aggs if f"{a}:worst" not in splits}
  return [k for k in splits if k not in single]


def _aggregates(splits: Sequence[str]) -> set[str]:
  """The family aggregates (``ood/<family>s``) among ``splits``."""
  stored = [k for k in splits if k.startswith("ood/") and ":" not in k]
  return set(ood_aggregates(stored)) - {"ood"}


def split_header(split: str) -> str:
  """A split's column header: ``ood:weighted`` -> ``ood (weighted)``."""
  name, _, how = split.partition(":")
  return f"{name} ({'worst group' if how == 'worst' else how})" if how else name


def wide(frame: pd.DataFrame, labels: Mapping[str, str] | None = None,
         decimals: Mapping[str, int] | None = None) -> pd.DataFrame:
  """Methods as rows, splits as columns, ``mean [95% CI]`` cells."""
  cells = frame.assign(cell=[
      cell_text(r.mean, r.std, r.ci_low, r.ci_high, decimals_of(r.metric, decimals))
      for r in frame.itertuples(index=False)])
  splits = shown_splits(frame)
  methods = list(dict.fromkeys(frame["method"]))
  w = cells.pivot(index="method", columns="split", values="cell").loc[methods, splits]
  if labels:
    w.index = [labels.get(m, m) for m in w.index]
  w.columns = [split_header(c) for c in w.columns]
  w.index.name = None
  w.columns.name = None
  return w


def _rank_styles(frame: pd.DataFrame) -> pd.DataFrame:
  """LaTeX styles per column: in bold the rows ``bold`` marks (the best and
  those not significantly worse, ``results.compare``); without intervals,
  the best in bold and the second underlined."""
  splits = shown_splits(frame)
  methods = list(dict.fromkeys(frame["method"]))
  styles = pd.DataFrame("", index=methods, columns=splits)
  for s in splits:
    rows = frame[frame["split"] == s]
    col = rows.set_index("method")["mean"].dropna()
    if col.empty:
      continue
    if rows["ci_low"].notna().any():
      for m in rows.loc[rows["bold"].astype(bool), "method"]:
        styles.loc[m, s] = "textbf:--rwrap;"
      continue
    lower = rows["metric"].iloc[0] in LOWER_IS_BETTER
    ranked = col.sort_values(ascending=lower, kind="stable").index.tolist()
    styles.loc[ranked[0], s] = "textbf:--rwrap;"
    if len(ranked) > 1:
      styles.loc[ranked[1], s] = "underline:--rwrap;"
  return styles


def latex_escape(text: str) -> str:
  """``text`` escaped for LaTeX by pandas' own rules (those of
  ``Styler.format(escape="latex")``)."""
  from pandas.io.formats.style_render import _escape_latex
  return _escape_latex(str(text))


def footnotes(frame: pd.DataFrame) -> list[str]:
  """The short notes a LaTeX table carries below it: each distinct ``note``
  once (the CSV keeps them per row)."""
  return list(dict.fromkeys(n for n in frame["note"] if isinstance(n, str) and n))


def to_latex(frame: pd.DataFrame, labels: Mapping[str, str] | None = None,
             caption: str | None = None, label: str | None = None,
             decimals: Mapping[str, int] | None = None) -> str:
  w = wide(frame, decimals=decimals).map(
      lambda c: latex_escape(c).replace("±", r"$\pm$"))
  styles = _rank_styles(frame)
  if labels:
    w.index = styles.index = [labels.get(m, m) for m in w.index]
  styles.columns = w.columns
  w.columns = styles.columns = [latex_escape(c) for c in w.columns]
  w.index = styles.index = [latex_escape(str(i)) for i in w.index]
  styler = w.style.apply(lambda _: styles, axis=None)
  tex = styler.to_latex(hrules=True, caption=caption, label=label, position_float="centering",
                        column_format="l" + "c" * w.shape[1])
  notes = footnotes(frame)
  if notes and tex.rstrip().endswith(r"\end{table}"):
    text = "; ".join(latex_escape(n) for n in notes)
    tex = tex.rstrip()[:-len(r"\end{table}")] + (
        f"\\par\\smallskip{{\\footnotesize Notes: {text}.}}\n\\end{{table}}\n")
  return tex


def write(frame: pd.DataFrame, stem: Path, labels: Mapping[str, str] | None = None,
          caption: str | None = None, label: str | None = None,
          decimals: Mapping[str, int] | None = None,
          seeds: pd.DataFrame | None = None) -> tuple[Path, ...]:
  """``<stem>.csv`` (long), ``<stem>.tex`` and, given ``seeds``
  (``seeds_frame``), ``<stem>.seeds.csv``."""
  csv_path, tex_path = stem.with_suffix(".csv"), stem.with_suffix(".tex")
  atomic_write_text(csv_path, frame.to_csv(index=False, float_format="%.6f",
                                           lineterminator="\n"))
  atomic_write_text(tex_path, to_latex(frame, labels, caption, label, decimals))
  if seeds is None:
    return csv_path, tex_path
  seeds_path = stem.with_name(stem.name + ".seeds.csv")
  atomic_write_text(seeds_path, seeds.to_csv(index=False, float_format="%.6f",
                                             lineterminator="\n"))
  return csv_path, tex_path, seeds_path
