"""Per-module mutation score from ``mutmut results --all true`` (the file
``make mutation`` writes, ``mutation-results.txt``): a Markdown table of
mutants, killed, survived and score per module, and the surviving mutants'
names. Killed counts mutants the tests failed on or timed out on (an infinite
loop is caught); survived counts the rest, "no tests" included (a mutant no
selected test reaches is not detected either).

  python -m tools.mutation_summary [mutation-results.txt]
"""
from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

KILLED = {"killed", "timeout", "segfault", "type check caught"}
LINE = re.compile(r"^\s*(\S+?)__mutmut_(\d+): (.+?)\s*$")


def module_of(name: str) -> str:
  """``benchmark.store.xǁRunStoreǁread`` -> ``benchmark/store.py``."""
  parts = name.split(".")
  mod = [p for p in parts if not p.startswith("x")]
  return "/".join(mod) + ".py"


def summarise(text: str):
  per = collections.defaultdict(collections.Counter)
  survivors = collections.defaultdict(list)
  for line in text.splitlines():
    m = LINE.match(line)
    if not m:
      continue
    fn, n, status = m.groups()
    mod = module_of(fn)
    per[mod]["total"] += 1
    if status in KILLED:
      per[mod]["killed"] += 1
    else:
      per[mod]["survived"] += 1
      if status == "no tests":
        per[mod]["no_tests"] += 1
      survivors[mod].append(f"{fn}__mutmut_{n} ({status})")
  return per, survivors


def table(per) -> str:
  rows = ["| module | mutants | killed | survived (no tests) | score |",
          "|---|---:|---:|---:|---:|"]
  tot = collections.Counter()
  for mod in sorted(per):
    c = per[mod]
    tot.update(c)
    rows.append(f"| `{mod}` | {c['total']} | {c['killed']} | {c['survived']} "
                f"({c['no_tests']}) | {100 * c['killed'] / c['total']:.1f}% |")
  rows.append(f"| **all** | {tot['total']} | {tot['killed']} | {tot['survived']} "
              f"({tot['no_tests']}) | {100 * tot['killed'] / max(tot['total'], 1):.1f}% |")
  return "\n".join(rows)


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  path = Path(argv[0] if argv else "mutation-results.txt")
  per, survivors = summarise(path.read_text())
  print(table(per))
  print()
  for mod in sorted(survivors):
    print(f"{mod}: {len(survivors[mod])} not killed")
    for s in survivors[mod]:
      print(f"  {s}")


if __name__ == "__main__":
  main()
