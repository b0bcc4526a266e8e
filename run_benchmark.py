"""Runs OOD fine-tuning methods on a distribution-shift benchmark and writes the
table (CSV + LaTeX) to WORKDIR/tables/<dataset>.{csv,tex}.

  python run_benchmark.py --list
  python run_benchmark.py --method ft,fs,levi --dataset synthetic_spurious --seeds 0,1,2
  python run_benchmark.py --method all --dataset tabular --data_dir my.csv --preset smoke
  python run_benchmark.py --method levi --dataset synthetic_spurious --config.lr.levi=0.01
  python run_benchmark.py --method all --dataset synthetic_spurious --shard 0/2 &  # and 1/2

Components (trained networks) and method results are kept in WORKDIR/runs/; a
rerun trains only what is missing.
"""
from __future__ import annotations

import re
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from benchmark import configs
from benchmark.errors import UserError
from benchmark.models import BACKBONES
from datasets import DATASETS
from methods import METHODS

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "Print every method, dataset, backbone and preset name.")
flags.DEFINE_bool("list_config", False, "Print the resolved config for --dataset/--preset.")
flags.DEFINE_string("method", None, "Comma-separated method names, or 'all'.")
flags.DEFINE_string("dataset", None, "Benchmark name (see --list).")
flags.DEFINE_string("backbone", None, "Large model; default: the dataset's.")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated non-negative integer seeds.")
flags.DEFINE_string("shard", "0/1", "i/N: run every N-th (method, seed) of the sweep from "
                    "the i-th, so that N processes (or cluster jobs) share one --workdir; "
                    "the last shard to finish writes the table.")
flags.DEFINE_string("table", "", "A table of the paper (1, 3, 5, 9, 10, 11, 14): trains its "
                    "missing runs, writes WORKDIR/tables/tableN.{csv,tex,hparams.json}.")
flags.DEFINE_string("figure", "", "4: the paper's Figure 4 (one adapting layer per block of "
                    "the pre-trained large model; trains what is missing); scatter: ID vs "
                    "OOD of every method run on --dataset. Writes WORKDIR/figures/.")
flags.DEFINE_bool("dry_run", False, "List the component trainings the command would run, "
                  "and their estimated cost, without training.")
flags.DEFINE_string("preset", "cpu", "smoke (seconds, CI) | cpu (minutes here) | paper.")
flags.DEFINE_string("workdir", "results", "Run store and tables go here.")
flags.DEFINE_string("data_dir", None, "Where the dataset's files are (a CSV for 'tabular'); "
                    "for a table spanning datasets, NAME=PATH[,NAME=PATH] gives one per "
                    "dataset (e.g. amazon_reviews=/data/amazon).")
flags.DEFINE_bool("extra_rows", True, "--table N: also the rows the harness adds below "
                  "the paper's (model soups, Model Ratatouille); --noextra_rows leaves them out.")
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.")


def _data_defaults():
  return {n: DATASETS.get(n).data_defaults for n in DATASETS}


def _backbone_defaults():
  return {n: BACKBONES.get(n).defaults for n in BACKBONES}


def check_config_overrides(argv: list[str], base) -> None:
  """Every ``--config.KEY=VALUE`` names a key of ``base`` and parses as its
  type; else a UserError naming the fix. Runs before absl parses the flags,
  where ml_collections would print a traceback (unknown key) or a two-line
  fatal error (bad value)."""
  import ast
  import difflib
  import ml_collections
  args = list(argv)
  for i, arg in enumerate(args):
    if not arg.startswith("--config."):
      continue
    key, sep, value = arg[len("--config."):].partition("=")
    if not sep:
      value = args[i + 1] if i + 1 < len(args) else ""
    node, path = base, []
    for part in key.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        here = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, here, n=1, cutoff=0.5)
        hint = f" (did you mean {'.'.join(path + close)}?)" if close else ""
        raise UserError(f"unknown config key {key!r}{hint}; --list_config --dataset NAME "
                        f"prints every key")
      node, path = node[part], path + [part]
    if isinstance(node, ml_collections.ConfigDict):
      raise UserError(f"config key {key!r} is a group; set one of its keys, e.g. "
                      f"--config.{key}.{next(iter(node.keys()), 'KEY')}=...")
    kind = type(node)
    try:
      if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError(value)
      elif kind is int:
        int(value)
      elif kind is float:
        float(value)
      elif kind in (tuple, list):
        parsed = ast.literal_eval(value)
        if not isinstance(parsed, (tuple, list, int, float)):
          raise ValueError(value)
    except (ValueError, SyntaxError):
      example = {bool: "true", int: "5", float: "0.001", tuple: "(512,256)",
                 list: "[1,2]"}.get(kind, "...")
      article = "an" if kind.__name__[0] in "aeiou" else "a"
      raise UserError(f"config {key} takes {article} {kind.__name__}, not {value!r}; e.g. "
                      f"--config.{key}={example}") from None


_BASE_CONFIG = configs.base_config(_data_defaults(), _backbone_defaults())
if __name__ == "__main__":
  try:
    check_config_overrides(sys.argv[1:], _BASE_CONFIG)
  except UserError as _e:
    if "--verbose" in sys.argv:
      raise
    print(f"error: {_e}", file=sys.stderr)
    sys.exit(2)
config_flags.DEFINE_config_dict(
    "config", _BASE_CONFIG,
    "Overrides, e.g. --config.epochs=5 --config.lr.ft=1e-4 (see --list_config).")


def parse_shard(text: str) -> tuple[int, int]:
  m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
  if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
    raise UserError(f"malformed --shard {text!r}: give i/N with 0 <= i < N, e.g. "
                    f"--shard 0/2 and --shard 1/2 for two processes")
  return int(m.group(1)), int(m.group(2))


def data_dir_for(dataset: str) -> str | None:
  """``--data_dir``: one path for every dataset, or ``NAME=PATH[,NAME=PATH]``."""
  text = FLAGS.data_dir
  if not text or not re.match(r"^[A-Za-z0-9_]+=", text):
    return text
  dirs = {}
  for part in text.split(","):
    name, sep, path = part.partition("=")
    name = name.strip()
    if not sep or not path.strip():
      raise UserError(f"malformed --data_dir {text!r}: give PATH, or NAME=PATH[,NAME=PATH] "
                      f"with NAME a dataset (e.g. amazon_reviews=/data/amazon)")
    DATASETS.get(name)  # an unknown name: one line with the valid names
    dirs[name] = path.strip()
  return dirs.get(dataset)


def parse_seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip() != ""]
  except ValueError:
    seeds = []
  if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    raise UserError(f"malformed --seeds {text!r}: give distinct comma-separated "
                    f"non-negative integers, e.g. --seeds 0,1,2")
  return seeds


def parse_methods(text: str | None) -> list:
  if not text:
    raise UserError("no --method given: pass e.g. --method ft,levi or --method all "
                    "(--list prints the names)")
  if text.strip() == "all":
    return [METHODS.get(n) for n in METHODS]
  names = [m.strip() for m in text.split(",") if m.strip()]
  return [METHODS.get(n) for n in dict.fromkeys(names)]


def override_keys(argv: list[str]) -> list[str]:
  """The ``--config.KEY`` names given on the command line, in order."""
  keys = []
  for a in argv:
    if a.startswith("--config."):
      keys.append(a[len("--config."):].split("=", 1)[0])
  return keys


def resolve_config(dataset_spec, argv):
  overrides = {k: configs.get_dotted(FLAGS.config, k) for k in override_keys(argv)}
  return configs.build(FLAGS.preset, dataset_spec.presets, FLAGS.config, overrides)


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


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str]) -> int:
  # Imported here so that --list answers without initialising JAX.
  from benchmark import mesh, tables
  from benchmark.store import RunStore

  if FLAGS.list:
    print_lists()
    return 0
  if FLAGS.table:
    return run_table(argv)
  if FLAGS.figure:
    return run_figure(argv)
  if not FLAGS.dataset:
    raise UserError("no --dataset given: pass one of " + ", ".join(DATASETS.names()))
  spec = DATASETS.get(FLAGS.dataset)
  if FLAGS.list_config:
    print(resolve_config(spec, argv))
    return 0
  methods = parse_methods(FLAGS.method)
  seeds = parse_seeds(FLAGS.seeds)
  shard = parse_shard(FLAGS.shard)
  backbone = FLAGS.backbone or spec.default_backbone
  config = resolve_config(spec, argv)
  check_weights(backbone, config)

  mesh.maybe_initialize_distributed()
  mesh.enable_compilation_cache()
  store = RunStore(FLAGS.workdir)
  ctx = load_context(spec, config, backbone, store)
  if FLAGS.method.strip() == "all":
    methods = applicable(ctx, methods)
  validate_methods(ctx, methods, seeds)
  if FLAGS.dry_run:
    print_pending(ctx, methods, seeds)
    return 0
  store.check_writable()

  t0 = time.perf_counter()
  mine, records, choices = run_sweep(ctx, methods, seeds, shard)
  if records is None:
    return 0
  frame = tables.dataset_frame(records, [m.name for m in methods])
  labels = {m.name: m.name for m in methods}
  caption = (f"{tables.latex_escape(spec.name)}: {splits_metric(ctx)} ({better(ctx)} "
             f"is better), mean $\\pm$ std over seeds {','.join(map(str, seeds))}; "
             f"backbone {tables.latex_escape(backbone)}, preset {config.preset}")
  stem = store.root / "tables" / spec.name
  csv_path, tex_path = tables.write(frame, stem, labels, caption)
  hp_path = write_hparams(stem.with_suffix(".hparams.json"), {spec.name: (ctx, methods, seeds, choices)})
  print(f"\n{spec.name} ({splits_metric(ctx)}, {better(ctx)} is better; mean ± std over "
        f"{len(seeds)} seed(s); backbone {backbone}, preset {config.preset})")
  print(tables.wide(frame).to_string())
  print(f"\nwrote {csv_path}, {tex_path} and {hp_path}")
  print(summary(ctx, mine, records, t0))
  return 0


def parse_table(text: str) -> int:
  from benchmark import paper_tables as PT
  try:
    n = int(text)
  except ValueError:
    n = -1
  if n not in PT.NUMBERS:
    raise UserError(f"malformed --table {text!r}: give one of the paper's tables "
                    f"{', '.join(map(str, PT.NUMBERS))}, e.g. --table 1")
  if FLAGS.method:
    raise UserError("give either --table N (the paper's rows) or --method (your rows), "
                    "not both")
  return n


def run_table(argv: list[str]) -> int:
  """``--table N``: trains what the store lacks for the paper's table N (its
  rows on its datasets, learning rates chosen on ID validation where the
  preset has grids), then writes WORKDIR/tables/tableN.{csv,tex,hparams.json}."""
  from benchmark import mesh
  from benchmark import paper_tables as PT
  from benchmark.store import RunStore
  n = parse_table(FLAGS.table)
  if n == 3:
    return run_table3(argv)
  table = (PT.TABLES[n].with_more_extras(
      [(m, METHODS.get(m).label + PT.EXTRA_MARK) for m in METHODS if METHODS.get(m).extra_row])
      if FLAGS.extra_rows else PT.TABLES[n].without_extras())
  seeds = parse_seeds(FLAGS.seeds)
  shard = parse_shard(FLAGS.shard)
  datasets = table.datasets()
  if FLAGS.dataset:
    if FLAGS.dataset not in datasets:
      raise UserError(f"table {n} has datasets {', '.join(datasets)}, not "
                      f"{FLAGS.dataset!r}; drop --dataset or pick one of them")
    datasets = [FLAGS.dataset]
  methods = [METHODS.get(m) for m in table.methods]
  notes: dict[str, str] = {}
  plans = []
  for ds in datasets:  # validate everything before training anything
    if ds not in DATASETS:
      notes[ds] = "not in this harness yet"
      continue
    spec = DATASETS.get(ds)
    backbone = FLAGS.backbone or spec.default_backbone
    config = resolve_config(spec, argv)
    check_weights(backbone, config)
    plans.append((spec, config, backbone))
  mesh.maybe_initialize_distributed()
  mesh.enable_compilation_cache()
  store = RunStore(FLAGS.workdir)
  contexts, runs, method_notes = {}, {}, {}
  for spec, config, backbone in plans:
    try:
      ctx = load_context(spec, config, backbone, store)
    except UserError as e:  # e.g. Amazon files not downloaded: the column says n/a
      notes[spec.name] = f"no data ({e})"
      log(f"table {n}: skipping {spec.name}: {e}")
      continue
    # Rows a dataset cannot run (Model Ratatouille without auxiliary tasks) say n/a.
    can = applicable(ctx, methods)
    for m in methods:
      if m not in can:
        method_notes[(spec.name, m.name)] = (
            f"{spec.name} declares no auxiliary tasks" if m.needs_aux else
            f"{ctx.backbone.name} has no LoRA targets")
    validate_methods(ctx, can, seeds)
    contexts[spec.name], runs[spec.name] = ctx, can
  if not contexts:
    raise UserError(f"table {n}: none of its datasets can run here: "
                    + "; ".join(f"{d}: {why}" for d, why in notes.items()))
  if FLAGS.dry_run:
    for name, ctx in contexts.items():
      print_pending(ctx, runs[name], seeds)
    for ds, why in notes.items():
      print(f"{ds}: skipped, {why}")
    return 0
  store.check_writable()
  t0 = time.perf_counter()
  records, per, waiting = [], {}, False
  for name, ctx in contexts.items():
    mine, recs, choices = run_sweep(ctx, runs[name], seeds, shard)
    if recs is None:
      waiting = True
      continue
    records += recs
    per[name] = (ctx, runs[name], seeds, choices)
    log(summary(ctx, mine, recs, t0))
  if waiting:
    return 0
  frame = PT.frame(table, records, notes, method_notes)
  parts = [f"{name}: {ctx.backbone.name}" for name, ctx in contexts.items()]
  caption = (f"Table {n}. {table.caption}. Mean ± std (sample std, ddof 1) over seeds "
             f"{','.join(map(str, seeds))}; backbone {', '.join(parts)}; preset "
             f"{next(iter(contexts.values())).config.preset}"
             + "".join(f"; {ds}: {why}" for ds, why in notes.items()))
  outdir = store.root / "tables"
  csv_path, tex_path = PT.write(table, frame, outdir, caption)
  hp_path = write_hparams(outdir / f"table{n}.hparams.json", per)
  print(f"\n{caption}")
  print(PT.to_text(table, frame))
  print(f"\nwrote {csv_path}, {tex_path} and {hp_path}")
  return 0


def run_figure(argv: list[str]) -> int:
  from benchmark import figures, mesh, protocol
  from benchmark.store import RunStore
  what = FLAGS.figure.strip().lower()
  if what not in ("4", "scatter"):
    raise UserError(f"malformed --figure {FLAGS.figure!r}: give 4 (the paper's Figure 4) "
                    f"or scatter (ID vs OOD per method on --dataset)")
  seeds = parse_seeds(FLAGS.seeds)
  names = ([FLAGS.dataset] if FLAGS.dataset else ["movielens_genre"]) if what == "4" else (
      [FLAGS.dataset] if FLAGS.dataset else [])
  if not names:
    raise UserError("--figure scatter needs --dataset (the one whose runs to plot)")
  mesh.enable_compilation_cache()
  store = RunStore(FLAGS.workdir)
  contexts = {}
  for name in names:
    spec = DATASETS.get(name)
    backbone = FLAGS.backbone or spec.default_backbone
    config = resolve_config(spec, argv)
    check_weights(backbone, config)
    contexts[name] = load_context(spec, config, backbone, store)
  outdir = store.root / "figures"
  store.check_writable()
  if what == "4":
    frame = figures.layer_frame(contexts, seeds, log)
    png, csv = figures.figure4(frame, outdir)
    print(frame.groupby(["dataset", "block"])[["id", "ood"]].mean().to_string())
    print(f"\nwrote {png} and {csv}")
    return 0
  ctx = contexts[names[0]]
  methods = (parse_methods(FLAGS.method) if FLAGS.method
             else applicable(ctx, [METHODS.get(m) for m in METHODS]))
  records = []
  for m in methods:  # what the store holds for this config; nothing is trained
    for s in seeds:
      key, _ = protocol.method_key(ctx, m, s)
      rec = store.read(store.method_path(ctx.info.name, m.name, key))
      if rec is not None:
        records.append(rec)
  if not records:
    raise UserError(f"no runs of {names[0]} with this preset and config in {store.root}; "
                    f"run --method ... (same --preset and --config) first")
  png = figures.scatter(records, {m.name: m.label for m in methods},
                        outdir / f"scatter_{names[0]}.png",
                        f"{names[0]}, backbone {ctx.backbone.name}, preset {ctx.config.preset}")
  print(f"wrote {png} ({len({r['method'] for r in records})} methods, {len(records)} runs)")
  return 0


def run_table3(argv: list[str]) -> int:
  """``--table 3``: parameters, FLOPs and time per example for every method
  on each backbone of the paper's Tables 15-16 (and MiniLM), measured here."""
  import pandas as pd
  from benchmark import efficiency as E
  from benchmark.components import Context
  from benchmark.store import RunStore, atomic_write_text
  # The paper's rows, then every other registered method (e.g. one beyond the paper).
  methods = [METHODS.get(m) for m in E.TABLE3_METHODS]
  methods += [METHODS.get(m) for m in METHODS if m not in E.TABLE3_METHODS]
  store = RunStore(FLAGS.workdir)
  rows = []
  wanted = [FLAGS.backbone] if FLAGS.backbone else [b for b, _ in E.TABLE3_BACKBONES]
  for backbone, dataset in E.TABLE3_BACKBONES:
    if backbone not in wanted:
      continue
    spec = DATASETS.get(dataset)
    config = resolve_config(spec, argv)
    cfg = config.backbones[backbone]
    if BACKBONES.get(backbone).modality == "image":
      # the vision datasets' 224-pixel images and 1000 classes (ImageNet);
      # shapes only, so no image files are needed
      size = int(config.data[dataset].image_size)
      log(f"table 3: {backbone} on {size}x{size} images, 1000 classes")
      splits, length = E.image_splits(dataset, size, 1000), f"{size}px"
    else:
      log(f"table 3: {backbone} on {dataset} inputs ({cfg.max_len} tokens)")
      splits = E.token_splits(spec.load(config, data_dir_for(spec.name)), int(cfg.max_len))
      length = int(cfg.max_len)
    ctx = Context(splits, config, backbone, store, progress=log, structure_only=True)
    for r in E.measure(ctx, methods, progress=log, timing=not FLAGS.dry_run):
      rows.append({"backbone": backbone, "dataset": dataset, "seq_len": length,
                   "compute_dtype": str(cfg.compute_dtype), **r})
  frame = pd.DataFrame(rows)
  outdir = store.root / "tables"
  store.check_writable()
  caption = ("Table 3. Parameters, multiply-accumulates (MACs = XLA FLOPs / 2) per example "
             "of the inference forward, and measured training-step and inference time per "
             "example on this machine (batch 16, random weights), per method and backbone")
  atomic_write_text(outdir / "table3.csv", frame.to_csv(index=False, lineterminator="\n",
                                                      float_format="%.6g"))
  atomic_write_text(outdir / "table3.tex", E.to_latex(rows, caption))
  show = frame.copy()
  for c in ("train_params", "infer_params", "flops_per_example", "macs_per_example"):
    if c in show:
      show[c] = [E.human(v) if v == v else "" for v in show[c]]
  print(caption)
  print(show.drop(columns=[c for c in ("train_components", "infer_components", "dataset")
                           if c in show]).to_string(index=False))
  print(f"\nwrote {outdir / 'table3.csv'} and {outdir / 'table3.tex'}")
  return 0


def splits_metric(ctx) -> str:
  return ctx.info.metric


def better(ctx) -> str:
  return "lower" if ctx.info.metric == "rmse" else "higher"


def check_weights(backbone: str, config) -> None:
  bb = BACKBONES.get(backbone)
  if bb.weights_key is not None:  # published weights: present and readable?
    bb.weights_key(config.backbones[backbone])


def load_context(spec, config, backbone: str, store):
  from benchmark.components import Context
  log(f"loading {spec.name} (preset {config.preset})")
  splits = spec.load(config, data_dir_for(spec.name))
  return Context(splits, config, backbone, store, progress=log)


def applicable(ctx, methods: list) -> list:
  """``methods`` less those the backbone or dataset cannot run (LoRA rows on a
  backbone without attention projections, Model Ratatouille on a dataset
  without auxiliary tasks), said in one line each."""
  if ctx.backbone.lora_targets is None:
    skipped = [m.name for m in methods if m.needs_lora]
    if skipped:
      log(f"leaving out {', '.join(skipped)} ({ctx.backbone.name} has no attention "
          f"projections for LoRA)")
    methods = [m for m in methods if not m.needs_lora]
  if not ctx.splits.aux:
    skipped = [m.name for m in methods if m.needs_aux]
    if skipped:
      log(f"leaving out {', '.join(skipped)} ({ctx.info.name} declares no auxiliary "
          f"tasks)")
    methods = [m for m in methods if not m.needs_aux]
  return methods


def validate_methods(ctx, methods, seeds) -> None:
  """Every method's settings, before anything is written."""
  from benchmark import protocol
  for m in methods:
    for s in seeds:
      protocol.method_key(ctx, m, s)


def run_sweep(ctx, methods, seeds, shard):
  """Learning-rate selection (when the preset has grids), then every (method,
  seed) of this shard. ``records`` is None while other shards are running."""
  from benchmark import protocol, sweep
  choices = sweep.select(ctx, methods, seeds[0], shard)
  ctx = ctx.with_lrs(sweep.chosen_lrs(choices))
  mine = protocol.run(ctx, methods, seeds, shard)
  records = mine if shard[1] == 1 else protocol.collect(ctx, methods, seeds)
  if records is None:
    print(f"shard {shard[0]}/{shard[1]} finished its {len(mine)} run(s) on {ctx.info.name} "
          f"({len(ctx.trained)} component(s) trained); the table is written by the last "
          f"shard to finish, or by a rerun without --shard")
  return mine, records, choices


def summary(ctx, mine, records, t0) -> str:
  return (f"components: {len(ctx.trained)} trained, {len(set(ctx.loaded))} read from the "
          f"store; method results: {len(mine) - ctx.methods_reused} computed, "
          f"{ctx.methods_reused + len(records) - len(mine)} read from the store; "
          f"{time.perf_counter() - t0:.1f}s")


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
  import json
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


def main(argv: list[str]) -> None:
  if not FLAGS.verbose:
    logging.set_verbosity(logging.WARNING)  # e.g. JAX's 'no TPU' INFO line
  try:
    code = run(sys.argv)
  except UserError as e:
    if FLAGS.verbose:
      raise
    print(f"error: {e}", file=sys.stderr)
    code = 2
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
