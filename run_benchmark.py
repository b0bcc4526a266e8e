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
flags.DEFINE_string("preset", "cpu", "smoke (seconds, CI) | cpu (minutes here) | paper.")
flags.DEFINE_string("workdir", "results", "Run store and tables go here.")
flags.DEFINE_string("data_dir", None, "Where the dataset's files are (a CSV for 'tabular').")
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.")


def _data_defaults():
  return {n: DATASETS.get(n).data_defaults for n in DATASETS}


def _backbone_defaults():
  return {n: BACKBONES.get(n).defaults for n in BACKBONES}


config_flags.DEFINE_config_dict(
    "config", configs.base_config(_data_defaults(), _backbone_defaults()),
    "Overrides, e.g. --config.epochs=5 --config.lr.ft=1e-4 (see --list_config).")


def parse_shard(text: str) -> tuple[int, int]:
  m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
  if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
    raise UserError(f"malformed --shard {text!r}: give i/N with 0 <= i < N, e.g. "
                    f"--shard 0/2 and --shard 1/2 for two processes")
  return int(m.group(1)), int(m.group(2))


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
  from benchmark import mesh, protocol, tables
  from benchmark.components import Context
  from benchmark.store import RunStore

  if FLAGS.list:
    print_lists()
    return 0
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
  bb = BACKBONES.get(backbone)
  config = resolve_config(spec, argv)
  if bb.weights_key is not None:  # published weights: present and readable?
    bb.weights_key(config.backbones[backbone])

  mesh.maybe_initialize_distributed()
  mesh.enable_compilation_cache()
  log(f"loading {spec.name} (preset {config.preset})")
  splits = spec.load(config, FLAGS.data_dir)
  store = RunStore(FLAGS.workdir)
  ctx = Context(splits, config, backbone, store, progress=log)
  for m in methods:  # validates every method's settings before anything is written
    for s in seeds:
      protocol.method_key(ctx, m, s)
  store.check_writable()

  t0 = time.perf_counter()
  mine = protocol.run(ctx, methods, seeds, shard)
  records = mine if shard[1] == 1 else protocol.collect(ctx, methods, seeds)
  if records is None:
    print(f"shard {shard[0]}/{shard[1]} finished its {len(mine)} run(s) "
          f"({len(ctx.trained)} component(s) trained); the table is written by the last "
          f"shard to finish, or by a rerun without --shard")
    return 0
  frame = tables.dataset_frame(records, [m.name for m in methods])
  labels = {m.name: m.name for m in methods}
  caption = (f"{tables.latex_escape(spec.name)}: {splits.info.metric} ({'lower' if splits.info.metric == 'rmse' else 'higher'} "
             f"is better), mean $\\pm$ std over seeds {','.join(map(str, seeds))}; "
             f"backbone {tables.latex_escape(backbone)}, preset {config.preset}")
  csv_path, tex_path = tables.write(frame, store.root / "tables" / spec.name, labels, caption)
  print(f"\n{spec.name} ({splits.info.metric}, {'lower' if splits.info.metric == 'rmse' else 'higher'}"
        f" is better; mean ± std over {len(seeds)} seed(s); backbone {backbone}, "
        f"preset {config.preset})")
  print(tables.wide(frame).to_string())
  print(f"\nwrote {csv_path} and {tex_path}")
  print(f"components: {len(ctx.trained)} trained, {len(set(ctx.loaded))} read from the "
        f"store; method results: {len(mine) - ctx.methods_reused} computed, "
        f"{ctx.methods_reused + len(records) - len(mine)} read from the store; "
        f"{time.perf_counter() - t0:.1f}s")
  return 0


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
