"""What the command line prints and writes about its runs: progress lines,
the registries' names, captions, the run summary, the hyperparameters beside
each table (``*.hparams.json``) and the dry run's list of pending trainings."""
from __future__ import annotations

import json
import sys
import textwrap
import time

from benchmark import configs
from benchmark.models import BACKBONES
from datasets import DATASETS
from methods import METHODS

TABLE3_CAPTION = (
    "Table 3. Parameters, multiply-accumulates (MACs = XLA FLOPs / 2) per example "
    "of the inference forward, and measured training-step and inference time per "
    "example on this machine (batch 16, random weights), per method and backbone")


def log(msg: str) -> None:
  from benchmark import multihost
  if not multihost.is_main():  # one process of a run speaks for all
    return
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def print_lists() -> None:
  print("methods:   " + ", ".join(METHODS.names()))
  print("datasets:  " + ", ".join(DATASETS.names()))
  print("backbones: " + ", ".join(BACKBONES.names()))
  print("presets:   " + ", ".join(configs.PRESETS))
  for title, reg, desc in (("method", METHODS, lambda m: m.label),
                           ("dataset", DATASETS, lambda d: d.description),
                           ("backbone", BACKBONES, lambda b: b.description)):
    print(f"\n{title}s:")
    for n in reg:
      print(f"  {n:18s} {desc(reg.get(n))}")


def usage(flag_specs, flag_values=None) -> str:
  """``--help``: the usage, one line per flag (from ``flag_specs``, the
  ``(name, default, shown value, help)`` that define them), the presets,
  tables, examples and where to look next."""
  from benchmark import paper_tables
  lines = ["usage: python run_benchmark.py --method M[,M...] --dataset NAME [flags]",
           "                               [--config.KEY=VALUE ...]",
           "       python run_benchmark.py --table N | --figure 4|scatter [flags]",
           "",
           "Runs OOD fine-tuning methods on a distribution-shift benchmark and writes the",
           "table to WORKDIR/tables/. Finished runs are kept in WORKDIR/runs/: a rerun",
           "trains only what is missing, and after Ctrl-C the same command resumes.",
           "", "flags:"]
  options = [(n, shown) for n, _, shown, _ in flag_specs if "." in n]  # --launcher.*: one line
  for name, default, shown, text in flag_specs:
    if "." in name:
      continue
    flag = f"--{name}" + (f" {shown}" if shown else "")
    dflt = ("" if default in (None, "", False, True, shown) else f" (default {default})")
    lines += textwrap.wrap(f"  {flag:<20} {text}{dflt}", 90, subsequent_indent=" " * 23)
    if name == "launcher" and options:
      lines.append(" " * 23 + "--launcher.{" + ",".join(n.split(".", 1)[1] for n, _ in options)
                   + "} (README)")
  lines += [f"  {'--config.KEY=VALUE':<20} any config value, e.g. --config.epochs=5 "
            f"--config.lr.ft=1e-4",
            "",
            f"presets:  {', '.join(configs.PRESETS)} (default cpu); what each sets: "
            f"--list_config --dataset NAME --preset P",
            f"tables:   {paper_tables.numbers_text()} (3: parameters, FLOPs and time per "
            f"example)",
            "",
            "examples:",
            "  python run_benchmark.py --list",
            "  python run_benchmark.py --method ft,fs,levi --dataset synthetic_spurious "
            "--preset smoke",
            "  python run_benchmark.py --method all --dataset tabular --data_dir my.csv",
            "  python run_benchmark.py --method levi --dataset movielens_genre "
            "--config.lr.levi=0.01",
            "  python run_benchmark.py --table 5 --dry_run",
            "  python run_benchmark.py --figure scatter --dataset synthetic_spurious "
            "--preset smoke",
            "  python run_benchmark.py --method all --dataset synthetic_spurious "
            "--shard 0/2 &   # and 1/2",
            "",
            "next: --list (names), --list_config --dataset NAME (config keys), README.md",
            "(Running, Troubleshooting), docs/extending.md (a new method or dataset).",
            "Exit status: 0 done, 2 bad input (one error: line, nothing written), 130/143",
            "interrupted (Ctrl-C / SIGTERM; rerun to resume)."]
  return "\n".join(lines)


def splits_metric(ctx) -> str:
  return ctx.info.metric


def better(ctx) -> str:
  return "lower" if ctx.info.metric == "rmse" else "higher"


def interval_text(ctx, seeds) -> str:
  r = ctx.config.report
  over = f"mean over seeds {','.join(map(str, seeds))}"
  if int(r.bootstrap) == 0:
    return over + " ± std"
  return (f"{over} [{float(r.confidence):.0%} interval: bootstrap over test examples and "
          f"seeds]")


def dataset_caption(name: str, backbone: str, ctx, seeds, overrides: str = "",
                    reference: str | None = None) -> str:
  """The LaTeX caption of a ``--method`` run's table (escaped by pandas'
  rules: ``tables.latex_escape``)."""
  from benchmark import tables
  text = (f"{name}: {splits_metric(ctx)} ({better(ctx)} is better), "
          f"{interval_text(ctx, seeds)}; bold: the best row and every "
          f"row not significantly worse (paired bootstrap); backbone {backbone}, preset "
          f"{ctx.config.preset}" + (f"; {overrides}" if overrides else ""))
  return tables.latex_escape(text)


def dataset_heading(name: str, backbone: str, ctx, seeds, overrides: str = "",
                    reference: str | None = None) -> str:
  """The line printed above a ``--method`` run's table."""
  return (f"\n{name} ({splits_metric(ctx)}, {better(ctx)} is better; "
          f"{interval_text(ctx, seeds)}; backbone {backbone}, preset "
          f"{ctx.config.preset}" + (f"; {overrides}" if overrides else "") + ")")


def significance_lines(frame, labels=None) -> str:
  """Below the printed table: per shown split, the rows significantly
  different from the reference (paired bootstrap) and the rows tied with
  the best."""
  from benchmark import tables
  labels = labels or {}
  out = []
  for split in tables.shown_splits(frame):
    rows = frame[frame["split"] == split]
    if rows["ci_low"].isna().all():
      continue
    ref = rows["reference"].dropna()
    tied = [labels.get(m, m) for m in rows.loc[rows["bold"].astype(bool), "method"]]
    line = f"{tables.split_header(split)}: best or tied with it: {', '.join(tied)}"
    if len(ref):
      sig = rows[rows["ref_significant"].astype(bool) & (rows["method"] != ref.iloc[0])]
      diffs = [f"{labels.get(r.method, r.method)} {r.diff_ref:+.3f} [{r.diff_ref_low:+.3f}, "
               f"{r.diff_ref_high:+.3f}]" for r in sig.itertuples(index=False)]
      line += (f"; vs {labels.get(ref.iloc[0], ref.iloc[0])}: "
               + ("; ".join(diffs) if diffs else "no significant difference"))
    out.append(line)
  return "\n".join(out)


def upper_first(text: str) -> str:
  return text[:1].upper() + text[1:]


def table_caption(n: int, table, contexts, seeds, overrides: str = "") -> str:
  """The caption of the paper's table ``n`` as run here: seeds, intervals,
  each dataset's backbone, the preset and the overrides (why a dataset or
  cell is missing goes to the table's notes, not here)."""
  parts = [f"{name}: {ctx.backbone.name}" for name, ctx in contexts.items()]
  first = next(iter(contexts.values()))
  return (f"Table {n}. {table.caption}. {upper_first(interval_text(first, seeds))}; bold: "
          f"the best row and every row not significantly worse (paired bootstrap); backbone "
          f"{', '.join(parts)}; preset {first.config.preset}"
          + (f"; {overrides}" if overrides else ""))


def summary(contexts, runs, t0, paths=()) -> str:
  """The run's last line: components trained and read, method results
  computed and read, failures, wall time and the files written. ``runs`` is
  ``[(mine, records)]`` per dataset: this shard's method records and all of
  them (the same list without ``--shard``)."""
  runners = {id(c.runner): c.runner for c in contexts}.values()
  failed = {k for r in runners for k in r.failed}
  trained = sum(len(set(r.trained) - failed) for r in runners)
  read = sum(len(set(r.loaded) - failed) for r in runners)
  reused = sum(r.methods_reused for r in runners)
  mine = sum(len(m) for m, _ in runs)
  others = sum(len(recs) - len(m) for m, recs in runs if recs is not None)
  failed_methods = sum(r.get("status") == "failed" for m, _ in runs for r in m)
  wrote = f"; wrote {join_paths(paths)}" if paths else ""
  return (f"components: {trained} trained, {read} read from the store; method results: "
          f"{mine - reused} computed, {reused + others} read from the store; "
          f"{len(failed) + failed_methods} failed; {time.perf_counter() - t0:.1f} s wall"
          + wrote)


def join_paths(paths) -> str:
  """``a/b.csv, a/b.tex`` -> ``a/b.{csv,tex}``: the files of one stem in one name."""
  from pathlib import Path
  groups: dict[str, list[str]] = {}
  for p in map(Path, paths):
    stem, _, ext = p.name.partition(".")
    groups.setdefault(str(p.parent / stem), []).append(ext)
  return ", ".join(f"{s}.{{{','.join(e)}}}" if len(e) > 1 else (f"{s}.{e[0]}" if e[0] else s)
                   for s, e in groups.items())


def interrupted(contexts) -> str:
  """The one line a Ctrl-C or SIGTERM prints."""
  runners = {id(c.runner): c.runner for c in contexts}.values()
  n = sum(len(set(r.trained) - set(r.failed)) for r in runners)
  return (f"interrupted: {n} component{'' if n == 1 else 's'} finished and saved; rerun "
          f"the same command to resume")


def overrides_text(opts) -> str:
  """The command line's ``--config.*`` overrides as ``KEY=VALUE``s."""
  return " ".join(f"{k}={configs.get_dotted(opts.config, k)}" for k in opts.override_keys)


def scatter_title(ctx, opts) -> str:
  over = overrides_text(opts)
  return (f"{ctx.info.name}, backbone {ctx.backbone.name}, preset {ctx.config.preset}"
          + (f"\n{over}" if over else ""))


def scatter_name(ctx, opts, seeds, methods) -> str:
  """``scatter_<dataset>_<preset>_<hash>.png``: one file per configuration
  (config, backbone, seeds, methods), so another configuration's rerun
  writes a new file instead of overwriting this one."""
  from benchmark.store import key_of
  key = key_of({"config": ctx.config.to_dict(), "backbone": ctx.backbone.name,
                "seeds": list(seeds), "methods": [m.name for m in methods]})[:8]
  return f"scatter_{ctx.info.name}_{ctx.config.preset}_{key}.png"


def shard_waiting(ctx, shard, mine) -> str:
  return (f"shard {shard[0]}/{shard[1]} finished its {len(mine)} run(s) on {ctx.info.name} "
          f"({len(ctx.trained)} component(s) trained); the table is written by the last "
          f"shard to finish, or by a rerun without --shard")


def chosen_by(comp: str, kind: str, choices) -> str:
  """How a component's learning rate came about, for ``tableN.hparams.json``."""
  from benchmark.kinds import KINDS
  if "@" in comp:
    return "the soup's sweep (soup.lrs or the protocol grid)"
  if kind in choices:
    return "grid on ID val"
  lr_of = KINDS.get(kind).lr_of
  if lr_of in choices:
    return f"{lr_of}'s grid on ID val"
  return "config"


def write_hparams(path, per_dataset):
  """The hyperparameters every row was run with, next to its table: per
  dataset and method, each component's learning rate (and whether a grid
  chose it, with every grid point's ID validation score)."""
  from benchmark.store import atomic_write_text
  out = {}
  from benchmark.sweep import chosen_lrs
  for name, (ctx, methods, seeds, choices) in per_dataset.items():
    ctx = ctx.with_lrs(chosen_lrs(choices))  # the specs every row ran with
    rows = {}
    for m in methods:
      rows[m.name] = {comp: {"kind": sp.kind, "lr": sp.config.get("lr"),
                             "chosen_by": chosen_by(comp, sp.kind, choices)}
                      for comp, sp in m.specs(ctx, seeds[0]).items()}
      rows[m.name].update(m.config(ctx))
    out[name] = {"backbone": ctx.backbone.name, "preset": ctx.config.preset,
                 "seeds": list(seeds), "optimizer": ctx.config.optimizer,
                 "batch_size": ctx.config.batch_size, "epochs": ctx.config.epochs,
                 "methods": rows,
                 "grids": {k: c.to_json() for k, c in choices.items()}}
  atomic_write_text(path, json.dumps(out, indent=1, sort_keys=True) + "\n")
  return path


def print_pending(ctx, methods, seeds) -> int:
  """``--dry_run``: the component trainings still to run, each with its
  estimated cost, and the wall time they may take (a range); returns how
  many. A learning rate the protocol's grid is still to choose reads
  ``lr: grid``."""
  from benchmark import sweep
  todo = sweep.pending(ctx, methods, seeds)
  print(f"{ctx.info.name} (backbone {ctx.backbone.name}, preset {ctx.config.preset}): "
        f"{len(todo)} component training(s) to run")
  if not todo:
    return 0
  from benchmark import efficiency as E
  specs = [spec for spec, _ in todo]
  total, per = E.estimate(ctx, specs)
  for (spec, why), f in zip(todo, per):
    lr = spec.config.get("lr")
    shown = ("grid" if why == "seeds" and sweep.lr_to_choose(ctx, spec.kind) else
             "-" if lr is None else f"{lr:g}")
    print(f"  {spec.kind:<13} seed {spec.seed:<5} lr: {shown:<7} {why:<6} "
          f"{E.human(f):>7}FLOP  [{spec.key}]")
  rate = max(E.matmul_rate() for _ in range(3))  # the machine's speed, not a busy moment's
  low, high, n_timed, (lo_f, hi_f) = E.wall_range(ctx, specs, per, total - sum(per), rate)
  flops = (f"XLA-counted {E.human(total)}FLOP at this machine's float32 matmul rate of "
           f"{rate / 1e9:.0f} GFLOP/s times {lo_f:.1f} to {hi_f:.1f}")
  if n_timed == len(specs):
    how = (f"each from the times of stored runs like it in {ctx.store.root}, up to "
           f"{E.TIMED_SLACK:g}x the slowest when other work shares the cores")
  elif n_timed:
    how = (f"{n_timed} from the times of stored runs like them; the rest: {flops}, the "
           f"factor those runs took, plus compiling each kind once")
  else:
    how = f"{flops} (measured on a 2-core CPU), plus compiling each kind once"
  print(f"  estimated wall time: {duration(low)} to {duration(high)} ({how}; loading the "
        f"data not included)")
  return len(todo)


def duration(sec: float) -> str:
  if sec >= 5400:
    return f"{sec / 3600:.1f} h"
  return f"{sec / 60:.1f} min" if sec >= 120 else f"{sec:.0f} s"


def print_table3(frame, caption: str, outdir) -> None:
  """Table 3 on the terminal: counts in human units, the files written."""
  from benchmark import efficiency as E
  show = frame.copy()
  for c in ("train_params", "infer_params", "flops_per_example", "macs_per_example"):
    if c in show:
      show[c] = [E.human(v) if v == v else "" for v in show[c]]
  print(caption)
  print(show.drop(columns=[c for c in ("train_components", "infer_components", "dataset")
                           if c in show]).to_string(index=False))
  print(f"\nwrote {outdir / 'table3.csv'} and {outdir / 'table3.tex'}")
