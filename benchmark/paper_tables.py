"""The paper's results tables (rows, columns and column groups as printed),
built from method records: ``tableN.csv`` (long: one row per cell) and
``tableN.tex`` (mean ± std cells, best per column in bold, second
underlined).

A table spans datasets; a column whose dataset is not in the harness, or
whose data is not present, is kept in the layout with "n/a" cells and a
note saying why, so a partial table still has the paper's shape.
Table 3 (parameters, FLOPs, time) is built by ``benchmark.efficiency``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.store import atomic_write_text
from benchmark import results
from benchmark.tables import (LOWER_IS_BETTER, cell_text, decimals_of, footnotes,
                              headline_ood, latex_escape, ood_aggregates)

CSV_COLUMNS = ["table", "row", "method", "group", "column", "dataset", "split", "metric",
               "mean", "std", "ci_low", "ci_high", "n_seeds", "n_examples", "reference",
               "diff_ref", "diff_ref_low", "diff_ref_high", "ref_significant", "bold", "note"]


@dataclasses.dataclass(frozen=True)
class Col:
  dataset: str
  split: str       # "test_id", "ood" (mean over groups), "ood/<group>", "ood/products"
  header: str
  group: str       # the column group it sits under (a dataset, as in the paper)


@dataclasses.dataclass(frozen=True)
class PaperTable:
  number: int
  caption: str
  rows: tuple[tuple[str, str], ...]   # (method name, row label)
  cols: tuple[Col, ...]
  # Rows the harness adds below the paper's (weight averaging, not in the
  # paper); ``without_extras`` drops them.
  extra_rows: tuple[tuple[str, str], ...] = ()

  @property
  def methods(self) -> list[str]:
    return [m for m, _ in self.all_rows]

  @property
  def all_rows(self) -> tuple[tuple[str, str], ...]:
    return self.rows + self.extra_rows

  def without_extras(self) -> "PaperTable":
    return dataclasses.replace(self, extra_rows=())

  def with_more_extras(self, rows: Sequence[tuple[str, str]]) -> "PaperTable":
    """This table with ``rows`` (method, label) added to its extra rows, if it
    has any (the main comparison tables): methods beyond the paper a
    registry declares (``Method.extra_row``)."""
    if not self.extra_rows:
      return self
    new = tuple(r for r in rows if r[0] not in self.methods)
    return dataclasses.replace(self, extra_rows=self.extra_rows + new)

  def relabel_extras(self, labels: Mapping[str, str]) -> "PaperTable":
    """This table with its extra rows (not the paper's) labelled ``labels[m]``
    (the method registry's display names), marked as added."""
    return dataclasses.replace(self, extra_rows=tuple(
        (m, labels[m] + EXTRA_MARK if m in labels else label) for m, label in self.extra_rows))

  def datasets(self) -> list[str]:
    return list(dict.fromkeys(c.dataset for c in self.cols))


ML, AZ = "movielens_genre", "amazon_reviews"
MLG, AZG = "MovieLens", "Amazon Review"
MAIN_ROWS = (("ft", "Fine-tuning (FT)"), ("ht", "Light-tuning: half of blocks (HT)"),
             ("lp", "Light-tuning: linear probing (LP)"), ("fs", "From scratch (FS)"),
             ("lp_ft", "LP→FT"), ("ft_robust", "FT+RobustModel"), ("ft_fs", "FT+FS"),
             ("ft_zeroshot", "FT+ZeroShot"), ("levi", "LEVI"))
# Weight-averaging rows (issue 10): not in the paper, added below its rows in
# the main comparison tables; ``--noextra_rows`` leaves them out.
EXTRA_MARK = "†"
WEIGHT_AVERAGING = (("soup_uniform", "Uniform soup" + EXTRA_MARK),
                    ("soup_greedy", "Greedy soup" + EXTRA_MARK),
                    ("ratatouille", "Model Ratatouille" + EXTRA_MARK),
                    ("ratatouille_greedy", "Model Ratatouille, greedy" + EXTRA_MARK))
GENRES_1 = ("Adventure", "Sci-Fi", "War", "Crime", "Children's", "Horror")
GENRES_2 = ("Mystery", "Musical", "Animation", "Western", "Film-Noir", "Documentary")
PRODUCTS = ("Watches", "Toys", "Sports", "Music", "Jewelry", "Furniture", "Baby")

TABLES: dict[int, PaperTable] = {t.number: t for t in (
    PaperTable(1, "ID and OOD RMSE on MovieLens (genre shift) and Amazon Review (time "
               "and product shifts); lower is better", MAIN_ROWS, (
                   Col(ML, "test_id", "ID", MLG), Col(ML, "ood", "OOD (genre)", MLG),
                   Col(AZ, "test_id", "ID", AZG), Col(AZ, "ood/time", "OOD (time)", AZG),
                   Col(AZ, "ood/products", "OOD (product)", AZG)), WEIGHT_AVERAGING),
    PaperTable(5, "Ablations on the recommendation tasks (MovieLens genre shift, Amazon "
               "Review time shift); RMSE, lower is better", (
                   ("ft", "Fine-tuning"), ("a1", "A1) Large+Large"), ("a2", "A2) Large+MLP"),
                   ("a3", "A3) Large intermediates"), ("a4", "A4) Single-head MLP"),
                   ("a5", "A5) Multi-head MLP"), ("levi", "LEVI")), (
                   Col(ML, "test_id", "ID RMSE", MLG), Col(ML, "ood", "OOD RMSE", MLG),
                   Col(AZ, "test_id", "ID RMSE", AZG), Col(AZ, "ood/time", "OOD RMSE", AZG))),
    PaperTable(9, "OOD RMSE on MovieLens per genre (part 1)", MAIN_ROWS,
               tuple(Col(ML, f"ood/{g}", g, MLG) for g in GENRES_1), extra_rows=WEIGHT_AVERAGING),
    PaperTable(10, "OOD RMSE on MovieLens per genre (part 2)", MAIN_ROWS,
               tuple(Col(ML, f"ood/{g}", g, MLG) for g in GENRES_2), extra_rows=WEIGHT_AVERAGING),
    PaperTable(11, "OOD RMSE on Amazon Review per product category", MAIN_ROWS,
               tuple(Col(AZ, f"ood/product/{p}", p, AZG) for p in PRODUCTS), extra_rows=WEIGHT_AVERAGING),
    PaperTable(14, "LEVI with different large models; RMSE, lower is better", (
                   ("levi_pretrained", "LEVI with pre-trained large model"),
                   ("levi", "LEVI with light-tuned large model"),
                   ("levi_finetuned", "LEVI with fully fine-tuned large model")), (
                   Col(ML, "test_id", "ID", MLG), Col(ML, "ood", "OOD (12 genres)", MLG),
                   Col(AZ, "test_id", "ID", AZG), Col(AZ, "ood/time", "OOD (time)", AZG),
                   Col(AZ, "ood/products", "OOD (7 products)", AZG))),
)}
# The vision benchmarks (ViT-B/16): Diabetic Retinopathy's quality shift
# ("Medical") and ImageNet-Sketch -> A/R/V2. The paper's ImageNet "OOD Acc" is
# the unweighted mean of A, R and V2 (Table 2 FT: 21.62 = mean(1.90, 33.60,
# 29.37)); its vision tables have no FS or FT+FS rows (App. E.2).
MED, IMN = "retinopathy_quality", "imagenet_sketch"
MEDG, IMNG = "Medical", "ImageNet"
VISION_ROWS = (("ft", "ViT Fine-tuning (FT)"), ("ht", "ViT Light-tuning: HT"),
               ("lp", "ViT Light-tuning: LP"), ("lp_ft", "LP→FT"),
               ("ft_robust", "FT+RobustModel"), ("ft_zeroshot", "FT+ZeroShot"),
               ("levi", "LEVI"))
LORA_ROWS = (("lora", "LoRA-tuned ViT"), ("levi_lora", "LEVI w. LoRA-tuned ViT"))
VISION_MAIN = (Col(MED, "test_id", "ID Acc", MEDG), Col(MED, "ood", "OOD Acc", MEDG),
               Col(IMN, "test_id", "ID Acc", IMNG), Col(IMN, "ood", "OOD Acc", IMNG))
VARIANTS = tuple(Col(IMN, f"ood/{g}", f"OOD Acc: {g.upper()}", IMNG) for g in ("a", "r", "v2"))
TABLES.update({t.number: t for t in (
    PaperTable(2, "ID and OOD accuracy on the Medical (quality shift) and ImageNet "
               "(Sketch -> A/R/V2) datasets; higher is better", VISION_ROWS, VISION_MAIN, extra_rows=WEIGHT_AVERAGING),
    PaperTable(4, "LoRA results on the Medical and ImageNet datasets; accuracy, higher "
               "is better", LORA_ROWS, VISION_MAIN),
    PaperTable(12, "OOD accuracy on ImageNet-A, ImageNet-R and ImageNet-V2", VISION_ROWS,
               VARIANTS, extra_rows=WEIGHT_AVERAGING),
    PaperTable(17, "OOD accuracy of the LoRA rows on ImageNet-A, -R and -V2", LORA_ROWS,
               VARIANTS),
)})
NUMBERS = sorted([*TABLES, 3])


def numbers_text(numbers=None) -> str:
  """``NUMBERS`` as runs, e.g. ``1–5, 9–12, 14, 17`` (what --help and README say)."""
  runs: list[list[int]] = []
  for n in NUMBERS if numbers is None else numbers:
    if runs and n == runs[-1][-1] + 1:
      runs[-1].append(n)
    else:
      runs.append([n])
  return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def split_values(rec: Mapping, split: str) -> float | None:
  """One seed's score for a column's split; aggregates (``ood``,
  ``ood/products``, see ``tables.ood_aggregates``) are unweighted means over
  their groups (how the paper's Table 1 follows from its per-group tables)."""
  scores = rec.get("scores", {})
  aggs = ood_aggregates(list(scores))
  if split in aggs:
    return float(np.mean([scores[k] for k in aggs[split]]))
  return scores.get(split)


def headline_value(rec: Mapping, exclude: Sequence[str] = ()) -> float | None:
  """One seed's single OOD number for figures (``tables.headline_ood``;
  groups in ``exclude`` left out)."""
  scores = rec.get("scores", {})
  keys = headline_ood(list(scores), exclude)
  return float(np.mean([scores[k] for k in keys])) if keys else None


def _n_examples(rec: Mapping, split: str) -> int:
  n = rec.get("n_examples", {})
  aggs = ood_aggregates(list(n))
  if split in aggs:
    return int(sum(n[k] for k in aggs[split]))
  return int(n.get(split, 0))


def frame(table: PaperTable, records: Sequence[Mapping],
          notes: Mapping[str, str],
          method_notes: Mapping[tuple[str, str], str] | None = None,
          comparison: pd.DataFrame | None = None,
          exclude_of: Mapping[str, Sequence[str]] | None = None,
          min_group_size: int = results.MIN_GROUP_SIZE) -> pd.DataFrame:
  """Long frame, one row per (row, column) cell, in the paper's order, from
  the tidy frame of ``records`` (``results.tidy``; ``exclude_of``: per
  dataset, OOD groups left out of its aggregates). ``notes`` gives, per
  dataset without records, why (no data, ...); ``method_notes`` per
  (dataset, method) a row cannot run on (e.g. no auxiliary tasks for Model
  Ratatouille); ``comparison`` (``results.compare``) the intervals, paired
  differences and ``bold``."""
  method_notes = method_notes or {}
  exclude_of = exclude_of or {}
  by = {}
  for r in records:
    by.setdefault((r["dataset"], r["method"]), []).append(r)
  long = pd.concat([results.tidy(recs, exclude_of.get(ds, ()), min_group_size)
                    for (ds, _), recs in by.items()] or [pd.DataFrame(
                        columns=results.TIDY_COLUMNS)], ignore_index=True)
  values = {k: g.sort_values("seed")["value"].tolist()
            for k, g in long[long["status"] == "ok"].groupby(["dataset", "method", "split"])}
  cmp = ({} if comparison is None else
         {(r["dataset"], r["method"], r["split"]): r for r in comparison.to_dict("records")})
  rows = []
  for method, label in table.all_rows:
    for col in table.cols:
      recs = by.get((col.dataset, method), [])
      ok = [r for r in recs if r.get("status") == "ok"]
      vals = values.get((col.dataset, method, col.split), [])
      note = notes.get(col.dataset, "") or method_notes.get((col.dataset, method), "")
      if recs and not ok:
        note = "failed: " + str(recs[0].get("reason", ""))
      elif recs and not vals:
        note = f"no {col.split} split"
      metric = recs[0]["metric"] if recs else ""
      n = long[(long["dataset"] == col.dataset) & (long["method"] == method)
               & (long["split"] == col.split)]["n_examples"]
      c = cmp.get((col.dataset, method, col.split), {})
      rows.append([table.number, label, method, col.group, col.header, col.dataset,
                   col.split, metric,
                   float(np.mean(vals)) if vals else np.nan,
                   float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan,
                   c.get("ci_low", np.nan), c.get("ci_high", np.nan),
                   len(vals), int(n.iloc[0]) if len(n) else 0, c.get("reference"),
                   c.get("diff_ref", np.nan), c.get("diff_ref_low", np.nan),
                   c.get("diff_ref_high", np.nan), bool(c.get("ref_significant", False)),
                   bool(c.get("bold", False)), note])
  return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _cell(r, decimals=None) -> str:
  if np.isnan(r.mean):
    return "failed" if r.note.startswith("failed") else "n/a"
  return cell_text(r.mean, r.std, r.ci_low, r.ci_high, decimals_of(r.metric, decimals))


def to_text(table: PaperTable, f: pd.DataFrame, decimals=None) -> str:
  w = _wide(table, f, lambda r: _cell(r, decimals))
  return w.to_string()


def _wide(table: PaperTable, f: pd.DataFrame, cell) -> pd.DataFrame:
  labels = [label for _, label in table.all_rows]
  cols = pd.MultiIndex.from_tuples([(c.group, c.header) for c in table.cols])
  out = pd.DataFrame("", index=labels, columns=cols)
  for r in f.itertuples(index=False):
    out.loc[r.row, (r.group, r.column)] = cell(r)
  return out


def _ranks(table: PaperTable, f: pd.DataFrame) -> dict[tuple[str, str, str], str]:
  """(row, group, column) -> "best" | "second", per column: "best" for every
  row ``bold`` marks (the best and those not significantly worse) where the
  column has intervals; else the best, and the second."""
  out = {}
  for c in table.cols:
    col = f[(f["group"] == c.group) & (f["column"] == c.header)].dropna(subset=["mean"])
    if col.empty:
      continue
    if col["ci_low"].notna().any():
      out.update({(r, c.group, c.header): "best" for r in col.loc[col["bold"], "row"]})
      continue
    lower = col["metric"].iloc[0] in LOWER_IS_BETTER
    ranked = col.sort_values("mean", ascending=lower, kind="stable")["row"].tolist()
    out[(ranked[0], c.group, c.header)] = "best"
    if len(ranked) > 1:
      out[(ranked[1], c.group, c.header)] = "second"
  return out


def to_latex(table: PaperTable, f: pd.DataFrame, caption: str, decimals=None) -> str:
  ranks = _ranks(table, f)
  groups = list(dict.fromkeys(c.group for c in table.cols))
  span = {g: sum(c.group == g for c in table.cols) for g in groups}
  cap = latex_escape(caption).replace("±", r"$\pm$")
  lines = [r"\begin{table}", r"\centering", f"\\caption{{{cap}}}",
           f"\\label{{tab:levi-{table.number}}}",
           r"\begin{tabular}{l" + "c" * len(table.cols) + "}", r"\toprule"]
  lines.append(" & " + " & ".join(f"\\multicolumn{{{span[g]}}}{{c}}{{{latex_escape(g)}}}"
                                  for g in groups) + r" \\")
  start = 2
  rules = []
  for g in groups:
    rules.append(f"\\cmidrule(lr){{{start}-{start + span[g] - 1}}}")
    start += span[g]
  lines.append(" ".join(rules))
  lines.append("Method & " + " & ".join(latex_escape(c.header) for c in table.cols) + r" \\")
  lines.append(r"\midrule")
  cells = {(r.row, r.group, r.column): r for r in f.itertuples(index=False)}
  for i, (_, label) in enumerate(table.all_rows):
    if i == len(table.rows) and table.extra_rows:
      lines.append(r"\midrule")
    out = [latex_escape(label).replace(EXTRA_MARK, r"$^\dagger$")]
    for c in table.cols:
      r = cells[(label, c.group, c.header)]
      if np.isnan(r.mean):
        out.append("failed" if r.note.startswith("failed") else "n/a")
        continue
      text = latex_escape(_cell(r, decimals)).replace("±", r"$\pm$")
      rank = ranks.get((label, c.group, c.header))
      out.append(f"\\textbf{{{text}}}" if rank == "best" else
                 f"\\underline{{{text}}}" if rank == "second" else text)
    lines.append(" & ".join(out) + r" \\")
  lines.append(r"\bottomrule")
  lines.append(r"\end{tabular}")
  if table.extra_rows:
    lines.append(r"\par\smallskip{\footnotesize $^\dagger$ not in the paper: rows "
                 r"added by the harness (weight averaging, methods beyond the paper).}")
  notes = footnotes(f)
  if notes:  # why cells say n/a or failed (the CSV's ``note`` has them per cell)
    lines.append(r"\par\smallskip{\footnotesize Notes: "
                 + "; ".join(latex_escape(n) for n in notes) + ".}")
  lines += [r"\end{table}", ""]
  return "\n".join(lines)


def write(table: PaperTable, f: pd.DataFrame, outdir: Path, caption: str,
          decimals=None) -> tuple[Path, Path]:
  csv_path = outdir / f"table{table.number}.csv"
  tex_path = outdir / f"table{table.number}.tex"
  atomic_write_text(csv_path, f.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
  atomic_write_text(tex_path, to_latex(table, f, caption, decimals))
  return csv_path, tex_path
