"""Runs OOD fine-tuning methods on a distribution-shift benchmark and writes the
table (CSV + LaTeX) to WORKDIR/tables/<dataset>.{csv,tex}.

  python run_benchmark.py --list
  python run_benchmark.py --method ft,fs,levi --dataset synthetic_spurious --seeds 0,1,2
  python run_benchmark.py --method all --dataset tabular --data_dir my.csv --preset smoke
  python run_benchmark.py --method levi --dataset synthetic_spurious --config.lr.levi=0.01
  python run_benchmark.py --method all --dataset synthetic_spurious --shard 0/2 &  # and 1/2

Components (trained networks) and method results are kept in WORKDIR/runs/; a
rerun trains only what is missing. The work is done in ``benchmark/cli/``
(flag values in ``args``, the runs in ``runs``, what is printed and written
about them in ``report``) over the setup path of ``benchmark/setup.py``.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from benchmark import setup
from benchmark.cli import args, runs
from benchmark.errors import UserError

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

_BASE_CONFIG = setup.base_config()
if __name__ == "__main__":
  # --config.* overrides checked before absl parses them, where ml_collections
  # would print a traceback (unknown key) or a two-line fatal error (bad value).
  try:
    args.check_config_overrides(sys.argv[1:], _BASE_CONFIG)
  except UserError as _e:
    if "--verbose" in sys.argv:
      raise
    print(f"error: {_e}", file=sys.stderr)
    sys.exit(2)
config_flags.DEFINE_config_dict(
    "config", _BASE_CONFIG,
    "Overrides, e.g. --config.epochs=5 --config.lr.ft=1e-4 (see --list_config).")


def main(argv: list[str]) -> None:
  if not FLAGS.verbose:
    logging.set_verbosity(logging.WARNING)  # e.g. JAX's 'no TPU' INFO line
  try:
    code = runs.run(args.Options.from_flags(FLAGS, sys.argv))
  except UserError as e:
    if FLAGS.verbose:
      raise
    print(f"error: {e}", file=sys.stderr)
    code = 2
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
