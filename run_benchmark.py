"""Runs OOD fine-tuning methods on a distribution-shift benchmark and writes the
table (CSV + LaTeX) to WORKDIR/tables/<dataset>.{csv,tex}.

  python run_benchmark.py --help         # the flags, presets and examples
  python run_benchmark.py --method ft,fs,levi --dataset synthetic_spurious --seeds 0,1,2

Components (trained networks) and method results are kept in WORKDIR/runs/; a
rerun trains only what is missing, and Ctrl-C (or SIGTERM) stops a run so that
the same command resumes it. The work is done in ``benchmark/cli/`` (flag
values in ``args``, the runs in ``runs``, what is printed in ``report``, the
config keys' meanings in ``config_help``) over ``benchmark/setup.py``.
"""
from __future__ import annotations

import sys
import time

_STARTED = time.perf_counter()
from benchmark import interrupts  # noqa: E402  (before the heavy imports below)

if __name__ == "__main__":
  interrupts.install("interrupted: 0 components finished and saved; rerun the same "
                     "command to resume")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from benchmark import multihost, paper_tables, setup  # noqa: E402
from benchmark.cli import args, report, runs  # noqa: E402
from benchmark.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
# (name, default, value shown in --help, help); the order is --help's.
FLAG_SPECS = (
    ("method", None, "M,M|all", "methods to run (the table's rows), or 'all'"),
    ("dataset", None, "NAME", "the benchmark (see --list)"),
    ("backbone", None, "NAME", "the large model; default: the dataset's"),
    ("seeds", "0,1,2", "0,1,2", "seeds; tables show mean ± std over them"),
    ("preset", "cpu", "NAME", "smoke (seconds, CI) | cpu (minutes on 2 cores) | paper "
     "(accelerators)"),
    ("workdir", "results", "DIR", "the run store (runs/), tables/ and figures/"),
    ("data_dir", None, "PATH", "the dataset's files (a CSV for tabular); for a table "
     "spanning datasets NAME=PATH[,NAME=PATH]"),
    ("table", "", "N", f"a table of the paper ({paper_tables.numbers_text()}): trains its "
     "missing runs, writes tables/tableN.*"),
    ("figure", "", "4|scatter", "the paper's Figure 4, or ID vs OOD of every method run on "
     "--dataset; writes figures/"),
    ("extra_rows", True, None, "--table N: also the rows the harness adds (soups, "
     "Ratatouille); --noextra_rows drops them"),
    ("reference", "ft", "METHOD", "the row the others are compared with (paired "
     "bootstrap differences in the CSV)"),
    ("report", False, None, "rebuild the tables and report.html from the store; train "
     "nothing (an error names what is missing)"),
    ("dry_run", False, None, "list the trainings the command would run and their "
     "estimated time; train nothing"),
    ("shard", "0/1", "i/N", "run every N-th (method, seed) from the i-th, so that N "
     "processes share one --workdir"),
    ("launcher", "", "local|slurm", "the (method, seed) runs as a job array of --shard i/N "
     "jobs"),
    ("launcher.jobs", "0", "N", "--launcher: how many jobs (shards); 0: one per (method, "
     "seed) run"),
    ("launcher.partition", "", "NAME", "--launcher slurm: the partition"),
    ("launcher.time", "60", "MIN", "--launcher: each job's time limit, minutes"),
    ("launcher.gpus_per_job", "0", "G", "--launcher: GPUs per job (its local devices)"),
    ("launcher.cpus", "2", "C", "--launcher: CPUs per job"),
    ("launcher.mem_gb", "0", "GB", "--launcher: memory per job; 0: the partition's default"),
    ("launcher.folder", "", "DIR", "--launcher: submitit's logs and pickles; default "
     "WORKDIR/launcher"),
    ("nowait", False, None, "--launcher: print the job ids and return (rerun to collect)"),
    ("distributed_timeout_s", "30", "S", "a dead process stops the others in S s"),
    ("list", False, None, "print every method, dataset, backbone and preset"),
    ("list_config", False, None, "with --dataset: the config keys that apply, their "
     "values under --preset, and meanings"),
    ("verbose", False, None, "show tracebacks for errors"),
)
for _name, _default, _shown, _help in FLAG_SPECS:
  (flags.DEFINE_bool if isinstance(_default, bool) else flags.DEFINE_string)(
      _name, _default, _help)

_BASE_CONFIG = setup.base_config()
HELP_ARGS = ("--help", "-h", "-help", "--helpshort", "-?")


def check_command_line(argv: list[str]) -> None:
  """``--help`` prints the usage and exits 0; a misspelt flag or a bad
  ``--config.*`` override is one ``error:`` line and exit 2, before absl or
  ml_collections parse them (which print a fatal error or a traceback)."""
  if any(a in HELP_ARGS for a in argv[1:]):
    print(report.usage(FLAG_SPECS, FLAGS))
    sys.exit(0)
  try:
    args.check_flag_names(argv[1:], FLAGS, [n for n, *_ in FLAG_SPECS] + ["config"])
    args.check_config_overrides(argv[1:], _BASE_CONFIG)
  except UserError as e:
    if "--verbose" in argv:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  # Before the config flag is defined: ml_collections parses the --config.*
  # overrides then (a traceback for an unknown key).
  check_command_line(sys.argv)
config_flags.DEFINE_config_dict(
    "config", _BASE_CONFIG,
    "Overrides, e.g. --config.epochs=5 --config.lr.ft=1e-4 (see --list_config).")


def main(argv: list[str]) -> None:
  if not FLAGS.verbose:
    logging.set_verbosity(logging.WARNING)  # e.g. JAX's 'no TPU' INFO line
  interrupts.arm()
  try:
    if len(argv) > 1:
      raise UserError(f"unexpected argument {argv[1]!r}: every value follows its flag, "
                      f"and lists take commas (e.g. --method ft,levi)")
    code = runs.run(args.Options.from_flags(FLAGS, sys.argv), started=_STARTED)
  except UserError as e:
    if FLAGS.verbose:
      raise
    print(f"error: {e}", file=sys.stderr)
    code = 2
  except multihost.PeerFailed as e:  # process 0 said so; it prints the details
    print(f"error: {e}", file=sys.stderr)
    code = multihost.EXIT_PEER_LOST
  except Exception:
    # A collective that a dead peer left: the watchdog names it and exits
    # (one line) within its bound; any other error is raised as it is.
    multihost.wait_for_watchdog()
    if multihost.active():
      import traceback
      traceback.print_exc()
      multihost.finish(1)  # the others are told, and stop too
    raise
  except interrupts.Interrupted as e:  # claims released, temporary files removed
    if FLAGS.verbose:
      raise
    print(report.interrupted(runs.CONTEXTS), file=sys.stderr)
    code = e.exit_code
  interrupts.disarm()
  multihost.finish(code)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
