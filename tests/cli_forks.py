"""Runs many short ``run_benchmark.py`` command lines as forks of one process
that imported the harness once, so that each costs its own work and not the
seconds of importing JAX, Flax and the registries again.

``run_many(jobs)`` starts ``python -m tests.cli_forks`` (the server) and
hands it every job; the server imports what ``run_benchmark.py`` imports,
without starting a JAX backend (forking a process with a live backend is not
safe), then forks one child per job: the child points its stdout and stderr
at files, sets ``sys.argv`` and runs ``run_benchmark.py`` as ``__main__``,
exactly as ``python run_benchmark.py ARGS`` would from there on (its
``__main__`` block, flag parsing, atexit handlers and exit status).
"""
from __future__ import annotations

import atexit
import json
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "run_benchmark.py"


def cli_argv(args, workdir) -> list[str]:
  """``ARGS --workdir WORKDIR``, with ``--preset smoke`` first unless ``args``
  names a preset itself (a run that gets past validation stays in the
  seconds range)."""
  args = [str(a) for a in args]
  if not any(a == "--preset" or a.startswith("--preset=") for a in args):
    args = ["--preset", "smoke", *args]
  return [*args, "--workdir", str(workdir)]


def run_many(jobs: dict[str, list[str]], workers: int = 2, timeout: float = 600
             ) -> dict[str, subprocess.CompletedProcess]:
  """name -> the finished command line ``run_benchmark.py ARGS``, for every
  ``jobs[name] = ARGS`` (run from the repo root, this process's environment,
  ``workers`` at a time; ``cli_argv`` adds the preset and workdir)."""
  with tempfile.TemporaryDirectory(prefix="cli-forks-") as tmp:
    spec = [{"name": name, "argv": [str(a) for a in args],
             "stdout": os.path.join(tmp, f"{i}.out"), "stderr": os.path.join(tmp, f"{i}.err")}
            for i, (name, args) in enumerate(jobs.items())]
    server = subprocess.run(
        [sys.executable, "-m", "tests.cli_forks", str(workers)], cwd=REPO_ROOT,
        input="".join(json.dumps(s) + "\n" for s in spec), capture_output=True, text=True,
        timeout=timeout)
    if server.returncode != 0:
      raise RuntimeError(f"tests.cli_forks failed ({server.returncode}): {server.stderr[-3000:]}")
    codes = {r["name"]: r["returncode"] for r in map(json.loads, server.stdout.splitlines())}
    return {s["name"]: subprocess.CompletedProcess(
                ["run_benchmark.py", *s["argv"]], codes[s["name"]],
                Path(s["stdout"]).read_text(), Path(s["stderr"]).read_text())
            for s in spec}


def _child(job: dict) -> None:
  """Becomes ``python run_benchmark.py ARGV`` with its output in the job's
  files; never returns."""
  code = 1
  try:
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
      out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      os.dup2(out, fd)
      os.close(out)
    sys.stdin = open(os.devnull)
    sys.argv = [str(SCRIPT), *job["argv"]]
    try:
      runpy.run_path(str(SCRIPT), run_name="__main__")
      code = 0
    except SystemExit as e:  # what the interpreter does with it
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:  # an uncaught error: traceback and status 1
      traceback.print_exc()
      code = 1
    atexit._run_exitfuncs()
  finally:
    try:
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(code)


def _serve(workers: int) -> None:
  jobs = [json.loads(line) for line in sys.stdin if line.strip()]
  # What run_benchmark.py imports, before any fork; no backend is started.
  import absl.app  # noqa: F401
  import ml_collections.config_flags  # noqa: F401
  import benchmark.cli.args  # noqa: F401
  import benchmark.cli.report  # noqa: F401
  import benchmark.cli.runs  # noqa: F401
  import benchmark.multihost  # noqa: F401
  import benchmark.paper_tables  # noqa: F401
  import benchmark.setup  # noqa: F401
  import datasets  # noqa: F401
  import methods  # noqa: F401
  import jax
  assert not jax._src.xla_bridge.backends_are_initialized(), "a backend started before the forks"
  os.chdir(REPO_ROOT)
  running: dict[int, str] = {}
  results = []
  pending = list(jobs)
  while pending or running:
    while pending and len(running) < workers:
      job = pending.pop(0)
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        _child(job)
      running[pid] = job["name"]
    pid, status = os.wait()
    results.append({"name": running.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})
  for r in results:
    print(json.dumps(r))


if __name__ == "__main__":
  sys.path.insert(0, str(REPO_ROOT))
  _serve(int(sys.argv[1]))
