"""Figures (PNG, matplotlib), from store records.

- Figure 4 of the paper: one adapting layer on each single block of the
  frozen pre-trained large model in turn; ID and OOD score per block.
- An ID-versus-OOD scatter of every method run on a dataset, its axes named
  by the dataset's metric and OOD groups, error bars the std over seeds.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.paper_tables import headline_value, split_values
from benchmark.store import atomic_write_bytes, atomic_write_text


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: Path) -> Path:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
  atomic_write_bytes(path, buf.getvalue())
  return path



def layer_frame(contexts: Mapping[str, object], seeds: Sequence[int], progress) -> pd.DataFrame:
  """Trains (or reads) every single-block probe; one row per (dataset,
  block, seed) with its ID and OOD scores."""
  rows = []
  for name, ctx in contexts.items():
    n = ctx.num_blocks()
    for tap in range(n):
      for seed in seeds:
        progress(f"figure 4: {name} block {tap + 1}/{n} seed {seed}")
        rec = ctx.component(ctx.layer_probe_spec(tap, seed)).record
        rows.append({"dataset": name, "block": tap + 1, "seed": seed,
                     "metric": rec["metric"], "id": split_values(rec, "test_id"),
                     "ood": headline_value(rec)})
  return pd.DataFrame(rows)


def figure4(frame: pd.DataFrame, outdir: Path) -> tuple[Path, Path]:
  plt = _pyplot()
  stats = (frame.groupby(["dataset", "block", "metric"])[["id", "ood"]]
           .agg(["mean", "std"]).reset_index())
  stats.columns = ["_".join(c).strip("_") for c in stats.columns]
  csv = outdir / "figure4.csv"
  atomic_write_text(csv, stats.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
  names = list(dict.fromkeys(frame["dataset"]))
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
  for ax, name in zip(axes[0], names):
    d = stats[stats["dataset"] == name]
    metric = d["metric"].iloc[0].upper()
    for col, color, label in (("id", "tab:blue", "ID"), ("ood", "tab:red", "OOD")):
      ax.errorbar(d["block"], d[f"{col}_mean"], yerr=d[f"{col}_std"].fillna(0), color=color,
                  marker="o", capsize=3, label=label)
    ax.set_xlabel("block of the large model (bottom to top)")
    ax.set_ylabel(f"{metric} (one adapting layer on that block)")
    ax.set_title(name)
    ax.set_xticks(list(d["block"]))
    ax.legend()
  return _save(fig, outdir / "figure4.png"), csv


METRIC_NAMES = {"acc": "accuracy (%)", "rmse": "RMSE"}


def ood_label(keys: Sequence[str], metric: str, exclude: Sequence[str] = ()) -> str:
  """The OOD axis's label, from the dataset's own metric and groups (those
  ``headline_ood`` averages)."""
  from benchmark.tables import headline_ood
  groups = [k[4:] for k in headline_ood(list(keys), exclude)]
  name = METRIC_NAMES.get(metric, metric.upper())
  if len(groups) == 1:
    return f"OOD {name}, group {groups[0]}"
  listed = f": {', '.join(groups)}" if len(groups) <= 4 else ""
  return f"OOD {name}, unweighted mean over {len(groups)} groups{listed}"


def scatter(records: Sequence[Mapping], labels: Mapping[str, str], path: Path,
            title: str, exclude: Sequence[str] = ()) -> Path:
  """Mean ID (test_id) versus mean OOD score per method, with error bars of
  the standard deviation over seeds (sample std; none for one seed). OOD
  groups in ``exclude`` stay out of the OOD mean."""
  from benchmark.tables import LOWER_IS_BETTER
  plt = _pyplot()
  by: dict[str, list] = {}
  for r in records:
    if r.get("status") == "ok":
      by.setdefault(r["method"], []).append(r)
  fig, ax = plt.subplots(figsize=(6.0, 4.8))
  metric, keys = "", []
  for m, recs in by.items():
    metric, keys = recs[0]["metric"], list(recs[0]["scores"])
    xs = [split_values(r, "test_id") for r in recs]
    ys = [headline_value(r, exclude) for r in recs]
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    x, y = float(np.mean(xs)), float(np.mean(ys))
    ax.errorbar([x], [y], xerr=[sd(xs)], yerr=[sd(ys)], fmt="o", capsize=3,
                color="tab:red" if m.startswith("levi") else "tab:blue")
    ax.annotate(labels.get(m, m), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
  name = METRIC_NAMES.get(metric, metric.upper())
  better = "lower" if metric in LOWER_IS_BETTER else "higher"
  ax.set_xlabel(f"ID {name}, test_id")
  ax.set_ylabel(ood_label(keys, metric, exclude))
  seeds = sorted({r["seed"] for rs in by.values() for r in rs})
  ax.set_title(f"{title}\nmean ± std over seeds {','.join(map(str, seeds))}; {better} is "
               f"better", fontsize=8)
  return _save(fig, path)
