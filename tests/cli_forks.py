"""Runs ``run_benchmark.py`` command lines as forks of one process that
imported the harness once, so that each costs its own work and not the
seconds of importing JAX, Flax and the registries again.

``run_many(jobs)`` starts ``python -m tests.cli_forks batch`` and hands it
every job; ``run(argv, timeout)`` (what the ``run_cli`` fixture calls) hands
one job to a server kept for the test process (``python -m tests.cli_forks
serve``), with this process's current environment. A server imports what
``run_benchmark.py`` imports,
without starting a JAX backend (forking a process with a live backend is not
safe), then forks one child per job: the child points its stdout and stderr
at files, sets ``sys.argv`` and runs ``run_benchmark.py`` as ``__main__``,
exactly as ``python run_benchmark.py ARGS`` would from there on (its
``__main__`` block, flag parsing, atexit handlers and exit status). A job
whose JAX, XLA or TensorFlow variables differ from the server's (JAX reads
its own at import) runs as a fresh ``python`` instead.
"""
from __future__ import annotations

import atexit
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
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
        [sys.executable, "-m", "tests.cli_forks", "batch", str(workers)], cwd=REPO_ROOT,
        input="".join(json.dumps(s) + "\n" for s in spec), capture_output=True, text=True,
        timeout=timeout)
    if server.returncode != 0:
      raise RuntimeError(f"tests.cli_forks failed ({server.returncode}): {server.stderr[-3000:]}")
    codes = {r["name"]: r["returncode"] for r in map(json.loads, server.stdout.splitlines())}
    return {s["name"]: subprocess.CompletedProcess(
                ["run_benchmark.py", *s["argv"]], codes[s["name"]],
                Path(s["stdout"]).read_text(), Path(s["stderr"]).read_text())
            for s in spec}


_IMPORT_TIME_VARS = ("JAX_", "XLA_", "TF_")


def _import_time_env(env) -> dict:
  return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_VARS)}


class _Server:
  """``python -m tests.cli_forks serve``: one job at a time, over its stdin
  and stdout (a JSON line each way, then the exit status)."""

  def __init__(self):
    self.env = dict(os.environ)
    self.proc = subprocess.Popen([sys.executable, "-m", "tests.cli_forks", "serve"],
                                 cwd=REPO_ROOT, env=self.env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
    self.buffer = b""

  def _reply(self, timeout: float) -> dict | None:
    """The server's next line, or None after ``timeout`` seconds without one."""
    deadline = time.monotonic() + timeout
    fd = self.proc.stdout.fileno()
    while b"\n" not in self.buffer:
      ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
      if not ready:
        return None
      chunk = os.read(fd, 65536)
      if not chunk:
        raise RuntimeError(f"tests.cli_forks server exited ({self.proc.wait()})")
      self.buffer += chunk
    line, self.buffer = self.buffer.split(b"\n", 1)
    return json.loads(line)

  def run(self, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="cli-fork-") as tmp:
      job = {"name": "run", "argv": argv, "env": env,
             "stdout": os.path.join(tmp, "out"), "stderr": os.path.join(tmp, "err")}
      self.proc.stdin.write(json.dumps(job).encode() + b"\n")
      self.proc.stdin.flush()
      pid = self._reply(300)["pid"]  # the first job waits for the server's imports
      done = self._reply(timeout)
      if done is None:  # as subprocess.run(timeout=...): killed, then raised
        os.kill(pid, signal.SIGKILL)
        self._reply(60)
        raise subprocess.TimeoutExpired(["run_benchmark.py", *argv], timeout)
      return subprocess.CompletedProcess(["run_benchmark.py", *argv], done["returncode"],
                                         Path(job["stdout"]).read_text(),
                                         Path(job["stderr"]).read_text())

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.close()
      try:
        self.proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.proc.kill()


_SERVER: list[_Server] = []
_LOCK = threading.Lock()


def run(argv: list[str], env: dict | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
  """``python run_benchmark.py ARGV`` from the repo root in environment
  ``env`` (default: this process's), as a fork of this process's server
  (started on the first call, stopped at exit)."""
  argv = [str(a) for a in argv]
  env = dict(os.environ if env is None else env)
  with _LOCK:
    if _SERVER and _import_time_env(_SERVER[0].env) != _import_time_env(env):
      return subprocess.run([sys.executable, "run_benchmark.py", *argv], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=timeout)
    if _SERVER and _SERVER[0].proc.poll() is not None:  # it died: a new one
      _SERVER.pop()
    if not _SERVER:
      _SERVER.append(_Server())
      atexit.register(_SERVER[0].close)
    return _SERVER[0].run(argv, env, timeout)


def _child(job: dict) -> None:
  """Becomes ``python run_benchmark.py ARGV`` with its output in the job's
  files; never returns."""
  code = 1
  try:
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
      out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      os.dup2(out, fd)
      os.close(out)
    devnull = os.open(os.devnull, os.O_RDONLY)  # not the server's job pipe
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull)
    if "env" in job:
      os.environ.clear()
      os.environ.update(job["env"])
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


def _import_the_harness() -> None:
  """What run_benchmark.py imports, before any fork; no backend is started."""
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


def _fork(job: dict) -> int:
  sys.stdout.flush()
  sys.stderr.flush()
  pid = os.fork()
  if pid == 0:
    _child(job)
  return pid


def _batch(workers: int) -> None:
  jobs = [json.loads(line) for line in sys.stdin if line.strip()]
  _import_the_harness()
  running: dict[int, str] = {}
  results = []
  pending = list(jobs)
  while pending or running:
    while pending and len(running) < workers:
      job = pending.pop(0)
      running[_fork(job)] = job["name"]
    pid, status = os.wait()
    results.append({"name": running.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})
  for r in results:
    print(json.dumps(r))


def _serve() -> None:
  _import_the_harness()
  while line := sys.stdin.readline():
    pid = _fork(json.loads(line))
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
  sys.path.insert(0, str(REPO_ROOT))
  if sys.argv[1] == "serve":
    _serve()
  else:
    _batch(int(sys.argv[2]))
