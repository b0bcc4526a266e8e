"""What the command line prints and writes about its runs: progress lines,
the registries' names, captions, the run summary, the hyperparameters beside
each table (``*.hparams.json``) and the dry run's list of pending trainings."""
from __future__ import annotations

import json
import sys
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


def splits_metric(ctx) -> str:
  return ctx.info.metric


def better(ctx) -> str:
  return "lower" if ctx.info.metric == "rmse" else "higher"


def dataset_caption(name: str, backbone: str, ctx, seeds) -> str:
  """The LaTeX caption of a ``--method`` run's table."""
  from benchmark import tables
  return (f"{tables.latex_escape(name)}: {splits_metric(ctx)} ({better(ctx)} "
          f"is better), mean $\\pm$ std over seeds {','.join(map(str, seeds))}; "
          f"backbone {tables.latex_escape(backbone)}, preset {ctx.config.preset}")


def dataset_heading(name: str, backbone: str, ctx, seeds) -> str:
  """The line printed above a ``--method`` run's table."""
  return (f"\n{name} ({splits_metric(ctx)}, {better(ctx)} is better; mean ± std over "
          f"{len(seeds)} seed(s); backbone {backbone}, preset {ctx.config.preset})")


def table_caption(n: int, table, contexts, seeds, notes) -> str:
  """The caption of the paper's table ``n`` as run here: seeds, each
  dataset's backbone, the preset, and why a dataset is missing."""
  parts = [f"{name}: {ctx.backbone.name}" for name, ctx in contexts.items()]
  return (f"Table {n}. {table.caption}. Mean ± std (sample std, ddof 1) over seeds "
          f"{','.join(map(str, seeds))}; backbone {', '.join(parts)}; preset "
          f"{next(iter(contexts.values())).config.preset}"
          + "".join(f"; {ds}: {why}" for ds, why in notes.items()))


def summary(ctx, mine, records, t0) -> str:
  return (f"components: {len(ctx.trained)} trained, {len(set(ctx.loaded))} read from the "
          f"store; method results: {len(mine) - ctx.methods_reused} computed, "
          f"{ctx.methods_reused + len(records) - len(mine)} read from the store; "
          f"{time.perf_counter() - t0:.1f}s")


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
  estimated cost, and the total; returns how many."""
  from benchmark import sweep
  todo = sweep.pending(ctx, methods, seeds)
  print(f"{ctx.info.name} (backbone {ctx.backbone.name}, preset {ctx.config.preset}): "
        f"{len(todo)} component training(s) to run")
  if not todo:
    return 0
  from benchmark import efficiency as E
  total, per = E.estimate(ctx, [spec for spec, _ in todo])
  for (spec, why), f in zip(todo, per):
    lr = spec.config.get("lr")
    print(f"  {spec.kind:<13} seed {spec.seed:<5} lr {'-' if lr is None else f'{lr:g}':<7} "
          f"{why:<6} {E.human(f):>7}FLOP  [{spec.key}]")
  rate = E.matmul_rate()
  hours = lambda sec: f"{sec / 3600:.2f} h" if sec >= 360 else f"{sec:.0f} s"
  print(f"  estimated cost: {E.human(total)}FLOP (XLA count, tap cache included); "
        f"{hours(total / rate)} on this machine at its measured float32 matmul rate "
        f"({rate / 1e9:.0f} GFLOP/s; a lower bound), {hours(total / 1e14)} at a sustained "
        f"100 TFLOP/s")
  return len(todo)


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
