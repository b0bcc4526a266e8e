"""Runs every bad-input case of tests/test_cli_errors.py and prints a Markdown
table: case, arguments, the exact error line, exit status, and whether the
workdir stayed empty.

  python tools/bad_inputs.py
"""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_cli_errors import CASES, resolve, write_fixtures  # noqa: E402


def run(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  if "--preset" not in args:
    args = ["--preset", "smoke", *args]
  return subprocess.run([sys.executable, "run_benchmark.py", *args, "--workdir", str(workdir)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def main() -> None:
  with tempfile.TemporaryDirectory() as tmp:
    base = Path(tmp)
    files = write_fixtures(base / "files")
    jobs = {n: (resolve(a, files), base / "wd" / n) for n, (a, _) in CASES.items()}
    afile = base / "afile"
    afile.write_text("x")
    jobs["workdir_not_writable"] = (["--method", "ft", "--dataset", "synthetic_spurious",
                                     "--seeds", "0"], afile / "sub")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      done = {n: pool.submit(run, a, w) for n, (a, w) in jobs.items()}
      out = {n: f.result() for n, f in done.items()}
    print("| case | arguments | error line | exit | workdir untouched |")
    print("|---|---|---|---|---|")
    for n, (args, wd) in jobs.items():
      p = out[n]
      lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
      shown = " ".join(a.replace(str(base), "…") for a in args)
      untouched = not wd.exists() or not any(x.is_file() for x in wd.rglob("*"))
      err = (lines[-1] if lines else p.stderr.strip().splitlines()[-1]).replace(str(base), "…")
      print(f"| {n} | `{shown}` | `{err}` | {p.returncode} | {'yes' if untouched else 'NO'} |")


if __name__ == "__main__":
  main()
