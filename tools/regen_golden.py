"""Writes the golden files under ``tests/golden/`` (the only thing that
does: the tests compare, never write). Run after an intended change of an
output format, then read the diff before committing it:

  python -m tools.regen_golden                 # every golden file
  python -m tools.regen_golden --only tables   # toy.* and every tableN.*
  python -m tools.regen_golden --only table5 spec_keys

Names: ``toy``, ``tableN`` (every paper table), ``tables`` (all of those),
``spec_keys`` (store keys: change only for a deliberate change of what a
component is) and ``synthetic_all_cpu`` (the synthetic ``--method all`` table
on the cpu preset: a real run, minutes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from tests import golden_records as G  # noqa: E402


def _copy(paths, written):
  for p in paths:
    dest = G.GOLDEN / p.name
    shutil.copyfile(p, dest)
    written.append(dest)


def regen(names: list[str]) -> list[Path]:
  G.GOLDEN.mkdir(exist_ok=True)
  tables = [f"table{n}" for n in G.table_numbers()]
  everything = ["toy", *tables, "spec_keys", "synthetic_all_cpu"]
  wanted = []
  for n in names or everything:
    wanted += ["toy", *tables] if n == "tables" else [n]
  unknown = sorted(set(wanted) - set(everything))
  if unknown:
    raise SystemExit(f"unknown golden {unknown}; choose from tables, {', '.join(everything)}")
  written: list[Path] = []
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    if "toy" in wanted:
      _copy(G.write_toy(tmp), written)
    for name in tables:
      if name in wanted:
        _copy(G.write_table(int(name[len("table"):]), tmp), written)
    if "spec_keys" in wanted:
      import json

      from tests.test_spec_keys import GOLDEN, keys
      GOLDEN.write_text(json.dumps(keys(tmp / "keys"), indent=1, sort_keys=True) + "\n")
      written.append(GOLDEN)
    if "synthetic_all_cpu" in wanted:
      import pandas as pd

      from tests.test_golden_synthetic_all import ARGS, GOLDEN, NEWER
      env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
      subprocess.run([sys.executable, "run_benchmark.py", *ARGS, "--workdir", str(tmp / "wd")],
                     cwd=REPO, env=env, check=True, timeout=3600)
      got = pd.read_csv(tmp / "wd" / "tables" / "synthetic_spurious.csv", dtype=str)
      got[~got["method"].isin(NEWER)].to_csv(GOLDEN, index=False, lineterminator="\n")
      written.append(GOLDEN)
  return written


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", nargs="*", default=[], help="golden names (default: all)")
  for p in regen(ap.parse_args(argv).only):
    print(p.relative_to(REPO))


if __name__ == "__main__":
  main()
