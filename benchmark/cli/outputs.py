"""Where an invocation's results go: a report folder of its own that no rerun
overwrites (tables, per-seed scores, comparisons, ``run.json``, figures,
``report.html``), and the latest copies in ``WORKDIR/tables/``.

``WORKDIR/reports/<dataset-or-tableN>/<YYYYmmdd-HHMMSS>-<hash>/``: the hash is
of the command line and the resolved configuration, so two invocations in
the same second with different settings still get two folders.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from benchmark import results, setup
from benchmark.store import atomic_write_bytes, atomic_write_text, key_of, versions

HARNESS_ROOT = Path(__file__).resolve().parents[2]
STARTED_AT = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def bootstrap_of(config) -> results.Bootstrap:
  r = config.report
  return results.Bootstrap(n=int(r.bootstrap), confidence=float(r.confidence),
                           seed=int(r.bootstrap_seed))


def decimals_of(config) -> dict[str, int]:
  return {"rmse": int(config.report.decimals_rmse), "acc": int(config.report.decimals_acc)}


def comparison(ctx, records, reference: str | None):
  """``results.compare`` of one dataset's records (their predictions read
  from beside them in ``ctx.store``)."""
  paths = [ctx.store.method_path(r["dataset"], r["method"], r.get("key", ""))
           for r in records]
  mgs = int(ctx.config.report.min_group_size)
  long = results.tidy(records, ctx.splits.ood_excluded, mgs, paths)
  return results.compare(long, reference, bootstrap_of(ctx.config),
                         ctx.splits.ood_excluded, mgs)


def new_folder(root: Path, name: str, argv: Sequence[str], config_dicts) -> Path:
  """A fresh report folder under ``root/reports/name/``."""
  digest = key_of({"argv": list(argv), "config": config_dicts})[:8]
  base = root / "reports" / name / f"{time.strftime('%Y%m%d-%H%M%S')}-{digest}"
  folder, i = base, 1
  while folder.exists():  # the same command twice within a second
    folder, i = base.with_name(f"{base.name}-{i}"), i + 1
  folder.mkdir(parents=True)
  return folder


def publish(paths: Sequence[Path], outdir: Path) -> list[Path]:
  """Copies of a report's files as the latest in ``outdir`` (``tables/``)."""
  out = []
  for p in paths:
    atomic_write_bytes(outdir / p.name, p.read_bytes())
    out.append(outdir / p.name)
  return out


def write_seeds(path: Path, records, contexts) -> Path:
  """Every seed's score behind a table spanning datasets (``tables.seeds_frame``)."""
  import pandas as pd

  from benchmark import tables
  parts = [tables.seeds_frame([r for r in records if r["dataset"] == name],
                              ctx.splits.ood_excluded, int(ctx.config.report.min_group_size))
           for name, ctx in contexts.items()]
  frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
  atomic_write_text(path, frame.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
  return path


def git_state() -> dict:
  """The harness's commit and whether its tree had changes (None outside git)."""
  def git(*a):
    r = subprocess.run(["git", "-C", str(HARNESS_ROOT), *a], capture_output=True, text=True,
                       timeout=20)
    return r.stdout.strip() if r.returncode == 0 else None
  try:
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}
  return {"commit": commit, "dirty": None if dirty is None else bool(dirty)}


def non_default(config) -> dict:
  """Every config value that differs from the defaults (what the preset and
  the command line changed)."""
  from benchmark.cli.config_help import flat
  mine, dflt = flat(config), flat(setup.base_config())
  return {k: v for k, v in mine.items() if k not in dflt or dflt[k] != v}


def package_versions() -> dict:
  out = versions()
  for mod in ("pandas", "orbax.checkpoint", "ml_collections", "matplotlib"):
    m = sys.modules.get(mod)
    out[mod] = getattr(m, "__version__", None) if m else None
  return out


def run_json(folder: Path, *, argv: Sequence[str], contexts: Mapping, methods_of: Mapping,
             seeds: Sequence[int], records: Sequence[Mapping], overrides: str,
             files: Sequence[Path]) -> Path:
  """``run.json``: what a researcher needs to find this result again and
  redo it. ``contexts``: dataset -> Context (its learning rates chosen);
  ``methods_of``: dataset -> the methods run on it."""
  components = {}
  for name, ctx in contexts.items():
    for m in methods_of[name]:
      for s in seeds:
        for comp, spec in m.specs(ctx, s).items():
          components.setdefault(spec.kind, set()).add(spec.key)
  out = {
      "command": " ".join(argv), "argv": list(argv), "cwd": os.getcwd(),
      "overrides": overrides,
      "presets": {n: c.config.preset for n, c in contexts.items()},
      "non_default_config": {n: non_default(c.config) for n, c in contexts.items()},
      "backbones": {n: c.backbone.name for n, c in contexts.items()},
      "seeds": list(seeds),
      "harness": git_state(), "versions": package_versions(),
      "host": platform.node(), "platform": platform.platform(),
      "started": STARTED_AT, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "component_keys": {k: sorted(v) for k, v in sorted(components.items())},
      "method_records": sorted(f"{r['dataset']}/{r['method']}/{r.get('key')}"
                               for r in records),
      "files": [p.name for p in files],
  }
  path = folder / "run.json"
  atomic_write_text(path, json.dumps(out, indent=1, sort_keys=True, default=str) + "\n")
  return path


CSS_OF = {"textbf": "font-weight: bold", "underline": "text-decoration: underline"}


def styled(wide, styles):
  """A wide table's Styler with ``tables._rank_styles``-like marks as CSS."""
  css = styles.map(lambda s: "; ".join(CSS_OF[p.split(":")[0]] for p in s.split(";")
                                       if p.split(":")[0] in CSS_OF))
  css.index, css.columns = wide.index, wide.columns
  return wide.style.format(escape="html", na_rep="").apply(lambda _: css, axis=None)


def differences(frame, labels, decimals) -> "pd.DataFrame":
  """The paired differences with the reference, one row per method and
  shown split: ``diff [low, high]`` and whether the interval excludes 0."""
  import pandas as pd

  from benchmark import tables
  rows = frame[frame["reference"].notna() & (frame["method"] != frame["reference"])
               & frame["split"].isin(tables.shown_splits(frame))]
  if rows.empty:
    return pd.DataFrame()
  out = pd.DataFrame({
      "method": [labels.get(m, m) for m in rows["method"]],
      "split": [tables.split_header(s) for s in rows["split"]],
      "reference": [labels.get(m, m) for m in rows["reference"]],
      "difference [95% interval]": [
          tables.cell_text(r.diff_ref, float("nan"), r.diff_ref_low, r.diff_ref_high,
                           tables.decimals_of(r.metric, decimals))
          for r in rows.itertuples(index=False)],
      "significant": ["yes" if s else "no" for s in rows["ref_significant"]]})
  return out.reset_index(drop=True)


def write_html(folder: Path, *, title: str, frame, labels, decimals, records, ctx,
               provenance_path: Path, caption: str) -> Path:
  """``report.html`` of a ``--method`` run: the table with intervals and
  bold marks, the per-group OOD table, the paired differences, the ID-vs-OOD
  scatter with interval bars, learning curves of every component, Figure 4
  when the workdir has one, and the run's provenance."""
  from benchmark import figures, html_report, tables
  wide = tables.wide(frame, labels, decimals)
  styles = tables._rank_styles(frame)
  shown = tables.shown_splits(frame)
  groups = [tables.split_header(k) for k in shown if k.startswith("ood/") and ":" not in k
            and k not in tables._aggregates(shown)]
  main_cols = [c for c in wide.columns if c not in groups]
  styles.columns = wide.columns
  styles.index = wide.index
  parts = [(f"Table: {caption}", styled(wide[main_cols], styles[main_cols]))]
  if groups:
    parts.append(("Per OOD group", styled(wide[groups], styles[groups])))
  diffs = differences(frame, labels, decimals)
  if not diffs.empty:
    parts.append(("Paired differences with the reference (method minus reference)",
                  diffs.style.hide(axis="index").format(escape="html")))
  pngs = []
  mgs = int(ctx.config.report.min_group_size)
  exclude = [*ctx.splits.ood_excluded,
             *results.small_groups(records[0].get("n_examples", {}) if records else {}, mgs)]
  ok = [r for r in records if r.get("status") == "ok"]
  if ok:
    path = figures.scatter(ok, labels, folder / "scatter.png", title, exclude, errors=frame,
                           errors_label="95% bootstrap interval")
    pngs.append(("ID vs OOD, with 95% intervals", path.read_bytes()))
  fig4 = ctx.store.root / "figures" / "figure4.png"
  if fig4.exists():
    pngs.append(("Figure 4 (the workdir's latest)", fig4.read_bytes()))
  notes = [f"Bold: the best row and every row not significantly worse than it (paired "
           f"bootstrap over test examples and seeds); cells: mean over seeds "
           f"[95% interval]."] + tables.footnotes(frame)
  return html_report.write(folder / "report.html", title=title, tables=parts, figures=pngs,
                           curves=ctx.runner.records(),
                           provenance=json.loads(provenance_path.read_text()), notes=notes)


def write_table_html(folder: Path, *, table, frame, decimals, contexts, provenance_path: Path,
                     caption: str) -> Path:
  """``report.html`` of a ``--table N`` run: the table in the paper's layout
  (intervals, bold marks), its notes, learning curves and provenance."""
  import pandas as pd

  from benchmark import html_report
  from benchmark import paper_tables as PT
  wide = PT._wide(table, frame, lambda r: PT._cell(r, decimals))
  css = pd.DataFrame("", index=wide.index, columns=wide.columns)
  for (row, group, col), rank in PT._ranks(table, frame).items():
    css.loc[row, (group, col)] = CSS_OF["textbf" if rank == "best" else "underline"]
  sty = wide.style.format(escape="html", na_rep="").apply(lambda _: css, axis=None)
  notes = ["Bold: the best row and every row not significantly worse than it (paired "
           "bootstrap over test examples and seeds); cells: mean over seeds [95% interval]."]
  notes += PT.footnotes(frame)
  runners = {id(c.runner): c.runner for c in contexts.values()}.values()
  return html_report.write(folder / "report.html", title=f"Table {table.number}",
                           tables=[(caption, sty)],
                           curves=[r for run in runners for r in run.records()],
                           provenance=json.loads(provenance_path.read_text()), notes=notes)
