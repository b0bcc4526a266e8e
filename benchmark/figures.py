"""Figures (PNG, matplotlib), from store records.

- Figure 4 of the paper: one adapting layer on each single block of the
  frozen pre-trained large model in turn; ID and OOD score per block.
- An ID-versus-OOD scatter of every method run on a dataset, its axes named
  by the dataset's metric and OOD groups, error bars the std over seeds or
  given intervals (``errors``: e.g. bootstrap confidence intervals).
- Learning curves of component trainings (``learning_curves``): train loss
  and ID-validation metric per epoch, one line per component, one row of
  panels per component kind, from the records' ``loss_curve``/``val_curve``.
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


def png_bytes(fig, dpi: int = 150) -> bytes:
  """The figure as PNG; closes it (pyplot keeps every open figure alive)."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
  _pyplot().close(fig)
  return buf.getvalue()


def _save(fig, path: Path) -> Path:
  atomic_write_bytes(path, png_bytes(fig))
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


def headline_split(keys: Sequence[str], exclude: Sequence[str] = ()) -> str | None:
  """The table split whose value the scatter's OOD axis shows (``ood``, or the
  one group ``headline_ood`` picks), or None when that axis averages groups
  no table column holds."""
  from benchmark.tables import headline_ood, ood_aggregates
  if "ood" in ood_aggregates(list(keys), exclude):
    return "ood"
  groups = headline_ood(list(keys), exclude)
  return groups[0] if len(groups) == 1 else None


def scatter_figure(records: Sequence[Mapping], labels: Mapping[str, str], title: str,
                   exclude: Sequence[str] = (), errors: pd.DataFrame | None = None,
                   errors_label: str = "confidence interval"):
  """The figure of ``scatter`` (a matplotlib Figure, left open)."""
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
    if errors is None:
      xerr, yerr = [sd(xs)], [sd(ys)]
    else:
      xerr = _interval(errors, m, "test_id", x)
      yerr = _interval(errors, m, headline_split(keys, exclude), y)
    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", capsize=3,
                color="tab:red" if m.startswith("levi") else "tab:blue")
    ax.annotate(labels.get(m, m), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
  name = METRIC_NAMES.get(metric, metric.upper())
  better = "lower" if metric in LOWER_IS_BETTER else "higher"
  ax.set_xlabel(f"ID {name}, test_id")
  ax.set_ylabel(ood_label(keys, metric, exclude))
  seeds = sorted({r["seed"] for rs in by.values() for r in rs})
  bars = "± std" if errors is None else f"with {errors_label}"
  ax.set_title(f"{title}\nmean {bars} over seeds {','.join(map(str, seeds))}; {better} is "
               f"better", fontsize=8)
  return fig


def _interval(errors: pd.DataFrame, method: str, split: str | None, centre: float):
  """``[[below], [above]]`` of ``centre`` for ``errorbar``, from the row of
  (``method``, ``split``) in ``errors``; None (no bar) without one."""
  if split is None:
    return None
  row = errors[(errors["method"] == method) & (errors["split"] == split)]
  if row.empty or row[["ci_low", "ci_high"]].isna().any(axis=None):
    return None
  lo, hi = float(row["ci_low"].iloc[0]), float(row["ci_high"].iloc[0])
  return [[max(centre - lo, 0.0)], [max(hi - centre, 0.0)]]


def scatter(records: Sequence[Mapping], labels: Mapping[str, str], path: Path,
            title: str, exclude: Sequence[str] = (), errors: pd.DataFrame | None = None,
            errors_label: str = "confidence interval") -> Path:
  """Mean ID (test_id) versus mean OOD score per method, with error bars of
  the standard deviation over seeds (sample std; none for one seed). OOD
  groups in ``exclude`` stay out of the OOD mean.

  ``errors``: intervals to draw instead of the std, a frame with columns
  ``method``, ``split``, ``ci_low``, ``ci_high`` (others ignored, e.g. a long
  table frame): the ``test_id`` row gives the x bar and the row of the OOD
  axis's split (``headline_split``: ``ood`` or the one group) the y bar; a
  method without a row gets no bar. ``errors_label`` names them in the title
  (e.g. ``95% bootstrap CI``)."""
  return _save(scatter_figure(records, labels, title, exclude, errors, errors_label), path)


def curve_epochs(record: Mapping) -> tuple[list[int], list[int]]:
  """Epochs done (1 .. epochs) at each ``loss_curve`` and ``val_curve`` entry
  of a component record. Records written before ``val_epochs`` was kept put
  a validation curve as long as the loss curve at every epoch, and a shorter
  one evenly up to the last epoch (``eval_every`` is not in the record)."""
  n, m = len(record.get("loss_curve") or []), len(record.get("val_curve") or [])
  if record.get("val_epochs") is not None:
    val = [int(e) + 1 for e in record["val_epochs"]]
  elif m == n:
    val = list(range(1, n + 1))
  else:
    val = [round(n * (i + 1) / m) for i in range(m)]
  return list(range(1, n + 1)), val


def _curve_order(r: Mapping):
  lr = (r.get("config") or {}).get("lr")
  seed = r.get("seed")
  return (seed if isinstance(seed, int) else -1, lr if isinstance(lr, (int, float)) else 0,
          str(r.get("key")))


def learning_curves(records: Sequence[Mapping], title: str = "",
                    max_legend: int = 12) -> bytes:
  """PNG of the learning curves of component records (those of
  ``RunStore.component_path``, status ``ok``): per kind, in the order
  first seen, a row of two panels, train loss and ID-validation metric per
  epoch, one line per component (seed, lr and key in the legend, up to
  ``max_legend`` lines), its selected epoch (``best_epoch``) marked.
  Raises ValueError when no record has a loss curve."""
  return png_bytes(learning_curves_figure(records, title, max_legend), dpi=110)


def learning_curves_figure(records: Sequence[Mapping], title: str = "",
                           max_legend: int = 12):
  """The figure of ``learning_curves`` (a matplotlib Figure, left open)."""
  plt = _pyplot()
  from matplotlib.ticker import MaxNLocator
  by_kind: dict[str, list[Mapping]] = {}
  for r in records:
    if r.get("status", "ok") == "ok" and r.get("loss_curve"):
      by_kind.setdefault(str(r.get("kind", "?")), []).append(r)
  if not by_kind:
    raise ValueError("no component record with a per-epoch loss curve")
  fig, axes = plt.subplots(len(by_kind), 2, figsize=(10.0, 2.6 * len(by_kind)),
                           squeeze=False)
  for (kind, recs), (ax_loss, ax_val) in zip(by_kind.items(), axes):
    recs = sorted(recs, key=_curve_order)
    metrics = sorted({str(r.get("metric", "")) for r in recs})
    for i, r in enumerate(recs):
      epochs, val_epochs = curve_epochs(r)
      lr = (r.get("config") or {}).get("lr")
      label = f"seed {r.get('seed')}" + (f", lr {lr:g}" if isinstance(lr, (int, float)) else "") \
          + f", {str(r.get('key', ''))[:6]}"
      color = plt.cm.tab10(i % 10)
      ax_loss.plot(epochs, r["loss_curve"], color=color, lw=1.2, label=label)
      if r.get("val_curve"):
        ax_val.plot(val_epochs, r["val_curve"], color=color, lw=1.2, marker=".", label=label)
        best = r.get("best_epoch")
        if isinstance(best, int) and best + 1 in val_epochs:
          ax_val.plot([best + 1], [r["val_curve"][val_epochs.index(best + 1)]], marker="*",
                      ms=9, color=color, ls="none")
    ax_loss.set_title(f"{kind}: train loss ({len(recs)} component"
                      f"{'s' if len(recs) != 1 else ''})", fontsize=9)
    names = ", ".join(METRIC_NAMES.get(m, m.upper()) for m in metrics)
    if any(r.get("val_curve") for r in recs):
      ax_val.set_title(f"{kind}: ID validation {names} (★ selected epoch)", fontsize=9)
    else:
      ax_val.set_title(f"{kind}: no ID validation", fontsize=9)
      ax_val.text(0.5, 0.5, "not validated: the last epoch is kept", ha="center",
                  va="center", transform=ax_val.transAxes, fontsize=8, color="0.4")
      ax_val.set_yticks([])
      ax_val.set_xlim(ax_loss.get_xlim())
    for ax in (ax_loss, ax_val):
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
      ax.set_xlabel("epoch", fontsize=8)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
    if len(recs) <= max_legend:
      ax_loss.legend(fontsize=6, loc="upper right")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
