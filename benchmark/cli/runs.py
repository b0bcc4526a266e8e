"""The command line's runs: methods on one dataset, a table of the paper,
Table 3 (efficiency), and the figures; each validates every input before it
trains or writes anything, and returns the exit status."""
from __future__ import annotations

import sys
import time

from benchmark import setup
from benchmark.cli import args, outputs, report
from benchmark.cli.args import Options
from benchmark.cli.report import log
from benchmark.errors import UserError
from datasets import DATASETS
from methods import METHODS

# The dataset(s) the paper's Figure 4 shows: what --figure 4 runs when no
# --dataset is given (the CLI layer may name datasets; generic code does not).
FIGURE4_DATASETS = ("movielens_genre",)

# Every Context this invocation made (what an interrupt reports as saved),
# and when it started (the summary's wall time).
CONTEXTS: list = []
STARTED = time.perf_counter()


def run(opts: Options, started: float | None = None) -> int:
  """What the flags ask for: ``--list``, ``--table``, ``--figure``, else the
  methods on ``--dataset``. ``started``: when the process started
  (``time.perf_counter``), for the summary's wall time."""
  global STARTED
  STARTED = time.perf_counter() if started is None else started
  if opts.list:
    report.print_lists()
    return 0
  if opts.launcher is not None and (opts.table or opts.figure):
    raise UserError("--launcher submits the runs of --method on one --dataset; for --table "
                    "or --figure, run --shard i/N jobs on one --workdir yourself")
  if opts.table:
    return run_table(opts)
  if opts.figure:
    return run_figure(opts)
  return run_dataset(opts)


def prepare(opts: Options, dataset: str) -> tuple:
  """``dataset``'s config and backbone, its weights checked: the part of the
  setup that is cheap and fails fast."""
  backbone = setup.backbone_for(dataset, opts.backbone)
  config = args.config_for(opts, dataset)
  setup.check_weights(backbone, config)
  return config, backbone


def load_context(opts: Options, dataset: str, config, backbone: str, store):
  """The dataset's splits (from its ``--data_dir`` path) and Context."""
  log(f"loading {dataset} (preset {config.preset})")
  splits = setup.load_splits(dataset, config, args.data_dir_for(opts.data_dir, dataset))
  ctx = setup.load_context(dataset, config, backbone, store, progress=log, splits=splits)
  CONTEXTS.append(ctx)
  for split, text in ctx.splits.unseen_classes().items():
    if split not in ctx.splits.notes:  # a loader may have said it in its own words
      ctx.splits.notes[split] = text
  for split, text in ctx.splits.notes.items():  # data traps, e.g. a 1-row OOD group
    if split != "ood":
      print(f"warning: {dataset}: {text}", file=sys.stderr)
  return ctx


def run_dataset(opts: Options) -> int:
  """``--method M --dataset D``: trains what the store lacks, then writes
  WORKDIR/tables/D.{csv,tex,hparams.json}."""
  # Imported here so that --list answers without initialising JAX.
  from benchmark import mesh
  from benchmark.store import RunStore
  if not opts.dataset:
    raise UserError("no --dataset given: pass one of " + ", ".join(DATASETS.names()))
  name = DATASETS.get(opts.dataset).name
  if opts.list_config:
    from benchmark.cli import config_help
    from benchmark.models import BACKBONES
    print(config_help.config_text(args.config_for(opts, name), setup.base_config(), name,
                                  BACKBONES.get(setup.backbone_for(name, opts.backbone)),
                                  opts.override_keys))
    return 0
  methods = args.parse_methods(opts.method)
  seeds = args.parse_seeds(opts.seeds)
  shard = args.parse_shard(opts.shard)
  config, backbone = prepare(opts, name)

  mesh.maybe_initialize_distributed(args.parse_timeout(opts.distributed_timeout_s))
  mesh.enable_compilation_cache()
  store = RunStore(opts.workdir)
  ctx = load_context(opts, name, config, backbone, store)
  if opts.method.strip() == "all":
    methods, _ = applicable(ctx, methods)
  validate_methods(ctx, methods, seeds)
  if opts.launcher is not None:
    return run_launched(opts, ctx, methods, seeds, backbone)
  if opts.dry_run:
    report.print_pending(ctx, methods, seeds)
    return 0
  store.check_writable()

  reference = check_reference(opts.reference, methods)
  if opts.report:
    check_stored(ctx, methods, seeds)
  mine, records, choices = run_sweep(ctx, methods, seeds, shard)
  if records is None:
    print(report.summary([ctx], [(mine, records)], STARTED))
    return 0
  write_dataset_table(opts, ctx, backbone, methods, seeds, mine, records, choices, reference)
  return 0


def run_launched(opts: Options, ctx, methods, seeds, backbone: str) -> int:
  """``--launcher``: the sweep as a job array (``benchmark.cli.launch``), then
  the table from the store, as one command would write it."""
  from pathlib import Path

  from benchmark import protocol
  from benchmark.cli import launch
  lo = opts.launcher
  n = min(lo.jobs or len(protocol.jobs(methods, seeds)), len(protocol.jobs(methods, seeds)))
  if opts.dry_run:
    folder = Path(lo.folder) if lo.folder else ctx.store.root / "launcher"
    for i in range(n):
      print(" ".join(launch.shard_command(list(opts.argv), ctx.store.root, i, n)))
    if lo.cluster == "slurm":
      print(launch.sbatch_script(lo, n, folder))
    return 0
  ctx.store.check_writable()
  records, failed, choices = launch.run(lo, ctx, methods, seeds, list(opts.argv), log)
  if lo.nowait:
    print(f"submitted; when the jobs end, collect the table with: "
          f"{launch.collect_hint(list(opts.argv))}")
    return 0
  for line in failed:
    print(f"error: {line}", file=sys.stderr)
  if records is None:
    print(f"error: {len(failed)} job(s) failed and the store lacks some runs; rerun the "
          f"same command to resubmit only those", file=sys.stderr)
    return 1
  write_dataset_table(opts, ctx, backbone, methods, seeds, [], records, choices or {},
                      check_reference(opts.reference, methods))
  return 1 if failed else 0


def write_dataset_table(opts: Options, ctx, backbone: str, methods, seeds, mine, records,
                        choices, reference) -> None:
  """The run's report folder (tables, hparams, run.json, report.html), the
  latest tables in WORKDIR/tables/, and the table and summary on the
  terminal: process 0's alone (pure output, no step of the others)."""
  from benchmark import multihost, tables
  if not multihost.is_main():
    return
  name, store = ctx.info.name, ctx.store
  cmp = outputs.comparison(ctx, records, reference)
  frame = dataset_frame(ctx, records, methods, cmp)
  labels = {m.name: m.label for m in methods}  # the registry's display names
  over = report.overrides_text(opts)
  folder = outputs.new_folder(store.root, name, sys.argv, ctx.config.to_dict())
  written = tables.write(frame, folder / name, labels,
                         report.dataset_caption(name, backbone, ctx, seeds, over, reference),
                         f"tab:{name.replace('_', '-')}", outputs.decimals_of(ctx.config),
                         seeds=tables.seeds_frame(records, ctx.splits.ood_excluded,
                                                  int(ctx.config.report.min_group_size)))
  hp = report.write_hparams(folder / f"{name}.hparams.json",
                            {name: (ctx, methods, seeds, choices)})
  latest = outputs.publish([*written, hp], store.root / "tables")
  rj = outputs.run_json(folder, argv=sys.argv, contexts={name: ctx.with_lrs(
      sweep_lrs(choices))}, methods_of={name: methods}, seeds=seeds, records=records,
      overrides=over, files=[*written, hp])
  html = outputs.write_html(folder, title=f"{name}: {', '.join(labels.values())}",
                            frame=frame, labels=labels,
                            decimals=outputs.decimals_of(ctx.config), records=records,
                            ctx=ctx, provenance_path=rj,
                            caption=report.dataset_heading(name, backbone, ctx, seeds, over,
                                                           reference).strip())
  print(report.dataset_heading(name, backbone, ctx, seeds, over, reference))
  print(tables.wide(frame, decimals=outputs.decimals_of(ctx.config)).to_string())
  print(report.significance_lines(frame))
  print()
  print(report.summary([ctx], [(mine, records)], STARTED, [*latest, html]))


def sweep_lrs(choices):
  from benchmark import sweep
  return sweep.chosen_lrs(choices)


def check_reference(reference: str, methods) -> str | None:
  """``--reference``: a method of the run; the default (``ft``) may be absent."""
  names = [m.name for m in methods]
  if reference in names:
    return reference
  if reference and reference != "ft":
    raise UserError(f"--reference {reference} is not among the methods run "
                    f"({', '.join(names)}); add it to --method or pick one of them")
  return None


def check_stored(ctx, methods, seeds) -> None:
  """``--report``: every training the sweep needs is in the store, else an
  error naming what is missing (method results are combined from stored
  components, which trains nothing)."""
  from benchmark import sweep
  todo = sweep.pending(ctx, methods, seeds)
  if todo:
    names = [f"{spec.kind} seed {spec.seed}" for spec, _ in todo]
    raise UserError(f"--report: {len(todo)} training(s) of {ctx.info.name} are not in "
                    f"the store ({', '.join(names[:4])}{' ...' if len(names) > 4 else ''}); "
                    f"run the same command without --report first")


def dataset_frame(ctx, records, methods, comparison=None):
  """The table of a ``--method`` run, with what the data's notes say and a
  warning (and note) for methods whose seeds all gave the same result."""
  from benchmark import tables
  names = [m.name for m in methods]
  kw = dict(exclude=ctx.splits.ood_excluded, notes=ctx.splits.notes, comparison=comparison,
            min_group_size=int(ctx.config.report.min_group_size))
  frame = tables.dataset_frame(records, names, **kw)
  same = tables.identical_across_seeds(frame)
  if not same:
    return frame
  n, bs = len(ctx.splits.train), int(ctx.config.batch_size)
  why = (f"; the ID training set ({n} rows) fits in one batch (batch_size {bs}), so a seed "
         f"can change only the initialisation: add training rows or lower "
         f"--config.batch_size" if n <= bs else "")
  print(f"warning: {', '.join(same)}: identical results for every seed (± 0.000){why}",
        file=sys.stderr)
  return tables.dataset_frame(records, names, **kw,
                              method_notes={m: "identical across seeds" + why for m in same})


def run_table(opts: Options) -> int:
  """``--table N``: trains what the store lacks for the paper's table N (its
  rows on its datasets, learning rates chosen on ID validation where the
  preset has grids), then writes WORKDIR/tables/tableN.{csv,tex,hparams.json}."""
  from benchmark import mesh
  from benchmark import paper_tables as PT
  from benchmark.store import RunStore
  n = args.parse_table(opts.table, opts.method)
  if n == 3:
    return run_table3(opts)
  # Methods beyond the paper (``Method.extra_row``) join the weight-averaging rows.
  # The rows the harness adds carry the registry's display names.
  table = (PT.TABLES[n].with_more_extras(
      [(m, METHODS.get(m).label + PT.EXTRA_MARK) for m in METHODS if METHODS.get(m).extra_row])
      .relabel_extras({m: METHODS.get(m).label for m in METHODS})
      if opts.extra_rows else PT.TABLES[n].without_extras())
  seeds = args.parse_seeds(opts.seeds)
  shard = args.parse_shard(opts.shard)
  datasets = table.datasets()
  if opts.dataset:
    if opts.dataset not in datasets:
      raise UserError(f"table {n} has datasets {', '.join(datasets)}, not "
                      f"{opts.dataset!r}; drop --dataset or pick one of them")
    datasets = [opts.dataset]
  methods = [METHODS.get(m) for m in table.methods]
  notes: dict[str, str] = {}
  plans = []
  for ds in datasets:  # validate everything before training anything
    if ds not in DATASETS:
      notes[ds] = "not in this harness yet"
      continue
    name = DATASETS.get(ds).name
    plans.append((name, *prepare(opts, name)))
  mesh.maybe_initialize_distributed(args.parse_timeout(opts.distributed_timeout_s))
  mesh.enable_compilation_cache()
  store = RunStore(opts.workdir)
  contexts, runs, method_notes, said = {}, {}, {}, {}
  for name, config, backbone in plans:
    try:
      ctx = load_context(opts, name, config, backbone, store)
    except UserError as e:  # e.g. a dataset's files not downloaded: the column says n/a
      notes[name] = f"no data ({e})"
      said[name] = "no data (the message above)"  # the long message once on the terminal
      log(f"table {n}: skipping {name}: {e}")
      continue
    # Rows a dataset or backbone cannot run say n/a, and why.
    can, why = applicable(ctx, methods)
    method_notes.update({(name, m): reason for m, reason in why.items()})
    validate_methods(ctx, can, seeds)
    contexts[name], runs[name] = ctx, can
  if not contexts:
    raise UserError(f"table {n}: none of its datasets can run here: "
                    + "; ".join(f"{d}: {why}" for d, why in notes.items()))
  if opts.dry_run:
    for name, ctx in contexts.items():
      report.print_pending(ctx, runs[name], seeds)
    for ds, why in {**notes, **said}.items():
      print(f"{ds}: skipped, {why}")
    return 0
  store.check_writable()
  records, per, waiting, done = [], {}, False, []
  for name, ctx in contexts.items():
    mine, recs, choices = run_sweep(ctx, runs[name], seeds, shard)
    done.append((mine, recs))
    if recs is None:
      waiting = True
      continue
    records += recs
    per[name] = (ctx, runs[name], seeds, choices)
  if waiting:
    print(report.summary(list(contexts.values()), done, STARTED))
    return 0
  from benchmark import multihost
  if not multihost.is_main():  # the tables and report are process 0's (pure output)
    return 0
  import pandas as pd
  reference = check_reference(opts.reference, methods)
  cmp = pd.concat([outputs.comparison(ctx, [r for r in records if r["dataset"] == name],
                                      reference) for name, ctx in contexts.items()],
                  ignore_index=True)
  first = next(iter(contexts.values())).config
  frame = PT.frame(table, records, notes, method_notes, cmp,
                   {name: ctx.splits.ood_excluded for name, ctx in contexts.items()},
                   int(first.report.min_group_size))
  over = report.overrides_text(opts)
  caption = report.table_caption(n, table, contexts, seeds, over)
  folder = outputs.new_folder(store.root, f"table{n}", sys.argv,
                              {k: c.config.to_dict() for k, c in contexts.items()})
  written = PT.write(table, frame, folder, caption, outputs.decimals_of(first))
  written = (*written, outputs.write_seeds(folder / f"table{n}.seeds.csv", records, contexts))
  hp_path = report.write_hparams(folder / f"table{n}.hparams.json", per)
  latest = outputs.publish([*written, hp_path], store.root / "tables")
  rj = outputs.run_json(
      folder, argv=sys.argv, contexts={k: c.with_lrs(sweep_lrs(per[k][3]))
                                       for k, c in contexts.items() if k in per},
      methods_of={k: v for k, v in runs.items()}, seeds=seeds, records=records,
      overrides=over, files=[*written, hp_path])
  html = outputs.write_table_html(folder, table=table, frame=frame,
                                  decimals=outputs.decimals_of(first), contexts=contexts,
                                  provenance_path=rj, caption=caption)
  print("\n" + caption)
  for ds, why in {**notes, **said}.items():
    print(f"  {ds}: {why}")
  print(PT.to_text(table, frame, outputs.decimals_of(first)))
  print()
  print(report.summary(list(contexts.values()), done, STARTED, [*latest, html]))
  return 0


def run_figure(opts: Options) -> int:
  """``--figure 4``: trains (or reads) one adapting layer per block and plots
  ID and OOD per block; ``--figure scatter``: ID vs OOD of every method the
  store holds for ``--dataset``. Writes WORKDIR/figures/."""
  from benchmark import figures, mesh, protocol
  from benchmark.store import RunStore
  what = args.parse_figure(opts.figure)
  seeds = args.parse_seeds(opts.seeds)
  if opts.dataset:
    names = [opts.dataset]
  else:
    names = list(FIGURE4_DATASETS) if what == "4" else []
  if not names:
    raise UserError("--figure scatter needs --dataset (the one whose runs to plot)")
  mesh.enable_compilation_cache()
  store = RunStore(opts.workdir)
  contexts = {}
  for ds in names:
    name = DATASETS.get(ds).name
    config, backbone = prepare(opts, name)
    contexts[name] = load_context(opts, name, config, backbone, store)
  outdir = store.root / "figures"
  store.check_writable()
  if what == "4":
    frame = figures.layer_frame(contexts, seeds, log)
    png, csv = figures.figure4(frame, outdir)
    print(frame.groupby(["dataset", "block"])[["id", "ood"]].mean().to_string())
    print(f"\nwrote {png} and {csv}")
    return 0
  ctx = contexts[names[0]]
  methods = (args.parse_methods(opts.method) if opts.method
             else applicable(ctx, [METHODS.get(m) for m in METHODS])[0])
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
                        outdir / report.scatter_name(ctx, opts, seeds, methods),
                        report.scatter_title(ctx, opts), exclude=ctx.splits.ood_excluded)
  n = len({r["method"] for r in records})
  print(f"wrote {png} ({n} method{'' if n == 1 else 's'}, {len(records)} run"
        f"{'' if len(records) == 1 else 's'})")
  return 0


def run_table3(opts: Options) -> int:
  """``--table 3``: parameters, FLOPs and time per example for every method
  on each backbone of the paper's Tables 15-16 (and the offline default),
  measured here."""
  import pandas as pd

  from benchmark import efficiency as E
  from benchmark.models import BACKBONES
  from benchmark.store import RunStore, atomic_write_text
  # The paper's rows, then every other registered method (e.g. one beyond the paper).
  methods = [METHODS.get(m) for m in E.TABLE3_METHODS]
  methods += [METHODS.get(m) for m in METHODS if m not in E.TABLE3_METHODS]
  store = RunStore(opts.workdir)
  rows = []
  wanted = [opts.backbone] if opts.backbone else [b for b, _ in E.TABLE3_BACKBONES]
  for backbone, dataset in E.TABLE3_BACKBONES:
    if backbone not in wanted:
      continue
    name = DATASETS.get(dataset).name
    config = args.config_for(opts, name)
    cfg = config.backbones[backbone]
    if BACKBONES.get(backbone).modality == "image":
      # the vision datasets' 224-pixel images and 1000 classes (ImageNet);
      # shapes only, so no image files are needed
      size = int(config.data[dataset].image_size)
      log(f"table 3: {backbone} on {size}x{size} images, 1000 classes")
      splits, length = E.image_splits(dataset, size, 1000), f"{size}px"
    else:
      log(f"table 3: {backbone} on {dataset} inputs ({cfg.max_len} tokens)")
      data = setup.load_splits(name, config, args.data_dir_for(opts.data_dir, name))
      splits = E.token_splits(data, int(cfg.max_len))
      length = int(cfg.max_len)
    ctx = setup.load_context(name, config, backbone, store, progress=log,
                             structure_only=True, splits=splits)
    for r in E.measure(ctx, methods, progress=log, timing=not opts.dry_run):
      rows.append({"backbone": backbone, "dataset": dataset, "seq_len": length,
                   "compute_dtype": str(cfg.compute_dtype), **r})
  frame = pd.DataFrame(rows)
  outdir = store.root / "tables"
  store.check_writable()
  caption = report.TABLE3_CAPTION
  atomic_write_text(outdir / "table3.csv", frame.to_csv(index=False, lineterminator="\n",
                                                      float_format="%.6g"))
  atomic_write_text(outdir / "table3.tex", E.to_latex(rows, caption))
  report.print_table3(frame, caption, outdir)
  return 0


def applicable(ctx, methods: list, progress=log) -> tuple[list, dict[str, str]]:
  """``methods`` less those that do not apply to ``ctx``'s dataset and
  backbone (``Method.why_not``), and why each left out does not: said in one
  line per reason."""
  why = {m.name: m.why_not(ctx) for m in methods}
  left_out: dict[str, list[str]] = {}
  for m in methods:
    if why[m.name] is not None:
      left_out.setdefault(why[m.name], []).append(m.name)
  for reason, names in left_out.items():
    progress(f"leaving out {', '.join(names)} ({reason})")
  return ([m for m in methods if why[m.name] is None],
          {n: r for n, r in why.items() if r is not None})


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
  ctx = ctx.with_lrs(sweep.chosen_lrs(choices))  # the choices are a value
  mine = protocol.run(ctx, methods, seeds, shard)
  records = mine if shard[1] == 1 else protocol.collect(ctx, methods, seeds)
  if records is None:
    print(report.shard_waiting(ctx, shard, mine))
  return mine, records, choices
