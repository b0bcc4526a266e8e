"""Shared fixtures: the repo root on ``sys.path``, a runner for the CLI, and
the session's sealed environment: no network, no user cache.

At configure time (before any test module is imported, so that modules and
the subprocesses they start all see it) the session sets, once:

- ``LEVI_CACHE`` to a temporary folder seeded with the wheels the suite reads
  (``tests/data/wheels``, or ``$LEVI_TEST_WHEELS``; ``make test-data`` puts
  the recbole wheel there once), so no test reads or writes the user's cache;
- ``LEVI_OFFLINE=1``: ``benchmark.fetch`` never calls ``pip download``
  (a child process then fails with that message); in this process a call
  fails the test outright, whatever catches errors around it;
- ``JAX_COMPILATION_CACHE_DIR`` to one folder for the whole session and
  ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``: a program compiled by
  one worker, test or CLI child is read back by every other;
- ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` and ``HF_HOME`` in the
  temporary folder, and ``JAX_PLATFORMS=cpu``, for every module alike (they
  used to be set by whichever parity module was collected first).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))

TEST_WHEELS = Path(os.environ.get("LEVI_TEST_WHEELS", REPO_ROOT / "tests" / "data" / "wheels"))
_SESSION: dict = {}


class _NoDownload:
  """Stands in for ``subprocess`` inside ``benchmark.fetch``: ``pip download``
  fails the test (``pytest.fail`` is a BaseException: no ``except Exception``
  around the call can swallow it); anything else goes through."""

  def __getattr__(self, name):
    return getattr(subprocess, name)

  @staticmethod
  def run(cmd, *args, **kwargs):
    if "download" in [str(c) for c in cmd]:
      pytest.fail(f"the suite called pip download ({' '.join(map(str, cmd))}): tests must "
                  f"not touch the network; seed {TEST_WHEELS} (make test-data)", pytrace=False)
    return subprocess.run(cmd, *args, **kwargs)


def pytest_configure(config):
  tmp = Path(tempfile.mkdtemp(prefix="levi-test-cache-"))
  _SESSION["tmp"] = tmp
  # One compilation cache for the session: the first process (the xdist
  # controller, or the only one) makes it and its workers inherit it, so a
  # program compiled by one test, worker or CLI child is read back by every
  # other. It lives in the session's own temporary folder, never the user's.
  if "LEVI_TEST_JAX_CACHE" not in os.environ:
    os.environ["LEVI_TEST_JAX_CACHE"] = str(tmp / "jax")
    _SESSION["owns_jax_cache"] = True
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["LEVI_TEST_JAX_CACHE"]
  # Every program, however small: most of a short test's time is compiling
  # the same small programs (a model's eager initialisation, one op at a
  # time) that another worker or CLI child compiled already.
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  cache = tmp / "levi_cache"
  (cache / "wheels").mkdir(parents=True)
  for whl in sorted(TEST_WHEELS.glob("*.whl")) if TEST_WHEELS.is_dir() else []:
    shutil.copy(whl, cache / "wheels" / whl.name)
  os.environ["LEVI_CACHE"] = str(cache)
  os.environ["LEVI_OFFLINE"] = "1"
  os.environ["HF_HUB_OFFLINE"] = "1"
  os.environ["TRANSFORMERS_OFFLINE"] = "1"
  os.environ["HF_HOME"] = str(tmp / "hf_home")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from benchmark import fetch
  fetch.subprocess = _NoDownload()
  real_wheel = fetch.wheel

  def wheel_from_the_seeded_cache(requirement, pattern, fallback):
    d = fetch.cache_dir() / "wheels"
    if not (d.is_dir() and sorted(d.glob(pattern))):
      pytest.fail(f"a test asked for {requirement}, which is not in {d}: it would call pip "
                  f"download; seed {TEST_WHEELS} (make test-data)", pytrace=False)
    return real_wheel(requirement, pattern, fallback)

  fetch.wheel = wheel_from_the_seeded_cache


def pytest_unconfigure(config):
  tmp = _SESSION.pop("tmp", None)
  if tmp is not None:
    shutil.rmtree(tmp, ignore_errors=True)
  if _SESSION.pop("owns_jax_cache", False):
    os.environ.pop("LEVI_TEST_JAX_CACHE", None)


def _run_cli(args, workdir, env=None, timeout=300) -> subprocess.CompletedProcess:
  """Runs ``run_benchmark.py ARGS --workdir WORKDIR`` from the repo root, with
  ``--preset smoke`` unless ``args`` names a preset (``cli_forks.cli_argv``),
  in this process's environment updated with ``env``: a fork of a process
  that imported the harness once (``tests.cli_forks.run``)."""
  from tests import cli_forks
  return cli_forks.run(cli_forks.cli_argv(args, workdir), {**os.environ, **(env or {})},
                       timeout=timeout)


@pytest.fixture(scope="session")
def run_cli():
  """``run_cli(args, workdir, env=None) -> subprocess.CompletedProcess``."""
  return _run_cli


@pytest.fixture(scope="session")
def repo_root() -> Path:
  return REPO_ROOT
