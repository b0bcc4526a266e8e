"""Shared fixtures: the repo root on ``sys.path`` and a runner for the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))


def _run_cli(args, workdir, env=None, timeout=120) -> subprocess.CompletedProcess:
  """Runs ``run_benchmark.py ARGS --workdir WORKDIR`` from the repo root.

  ``--preset smoke`` is added unless ``args`` names a preset itself, so that a
  run that gets past validation stays in the seconds range.
  """
  args = [str(a) for a in args]
  if not any(a == "--preset" or a.startswith("--preset=") for a in args):
    args = ["--preset", "smoke", *args]
  full_env = dict(os.environ)
  full_env.setdefault("JAX_PLATFORMS", "cpu")
  full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  full_env.update(env or {})
  return subprocess.run(
      [sys.executable, "run_benchmark.py", *args, "--workdir", str(workdir)],
      cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def run_cli():
  """``run_cli(args, workdir, env=None) -> subprocess.CompletedProcess``."""
  return _run_cli


@pytest.fixture(scope="session")
def repo_root() -> Path:
  return REPO_ROOT
