"""Ctrl-C and SIGTERM on a real ``run_benchmark.py`` run mid-training: one
line, exit 130 / 143, no traceback, no temporary or lock file left, and the
rerun resumes the interrupted training and says so."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["--method", "ft,levi", "--dataset", "synthetic_spurious", "--seeds", "0",
         "--preset", "smoke", "--config.epochs=40", "--config.checkpoint_every_s=0"]
LINE = re.compile(r"^interrupted: (\d+) components? finished and saved; rerun the same "
                  r"command to resume$")
LOG = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _start(workdir: Path, out: Path) -> tuple[subprocess.Popen, Path, Path]:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  so, se = out.with_suffix(".out"), out.with_suffix(".err")
  p = subprocess.Popen([sys.executable, "run_benchmark.py", *SWEEP, "--workdir", str(workdir)],
                       cwd=REPO_ROOT, env=env, stdout=so.open("w"), stderr=se.open("w"))
  return p, so, se


def _step_dirs(workdir: Path) -> list[Path]:
  """Mid-training checkpoints: ckpt/<kind>/<key>/<epoch>."""
  return [p for p in (workdir / "ckpt").glob("*/*/*") if p.is_dir() and p.name.isdigit()]


def _leftovers(workdir: Path) -> list[Path]:
  return [p for p in workdir.rglob("*")
          if p.name.endswith((".tmp", ".lock")) or "orbax-checkpoint-tmp" in p.name
          or p.name == ".write-test"]


def _interrupt(workdir: Path, out: Path, sig: int, ready) -> tuple[int, str, str]:
  p, so, se = _start(workdir, out)
  t0 = time.monotonic()
  while p.poll() is None and not ready() and time.monotonic() - t0 < 300:
    time.sleep(0.02)
  assert p.poll() is None, "the run finished before it could be interrupted"
  p.send_signal(sig)
  p.wait(timeout=120)
  return p.returncode, so.read_text(), se.read_text()


def _check_one_line(rc: int, want_rc: int, out: str, err: str) -> int:
  assert rc == want_rc, (rc, err[-3000:])
  assert "Traceback" not in err and "Traceback" not in out, err
  messages = [l for l in err.splitlines() if l.strip() and not LOG.match(l)]
  assert len(messages) == 1 and LINE.match(messages[0]), messages
  return int(LINE.match(messages[0]).group(1))


@pytest.mark.slow
def test_sigint_and_sigterm_mid_training_then_the_rerun_resumes(tmp_path):
  wd = tmp_path / "wd"
  # 1. Ctrl-C while FT trains (after its first checkpoint): pre-training was
  # finished and saved.
  ft_started = lambda: any(p.parts[-3] == "ft" for p in _step_dirs(wd))
  rc, out, err = _interrupt(wd, tmp_path / "int", signal.SIGINT, ft_started)
  assert _check_one_line(rc, 130, out, err) == 1
  assert _leftovers(wd) == []
  saved = [p for p in _step_dirs(wd) if p.parts[-3] == "ft"]
  assert saved, "no FT checkpoint to resume from"

  # 2. SIGTERM during LEVI's training; the rerun first resumes FT.
  levi_started = lambda: any(p.parts[-3] == "levi_light" for p in _step_dirs(wd))
  rc, out, err = _interrupt(wd, tmp_path / "term", signal.SIGTERM, levi_started)
  assert re.search(r"resuming ft seed 0 from epoch \d+ of 40", err), err
  assert "pretrain seed 0 (stored)" in err
  assert _check_one_line(rc, 143, out, err) == 1   # FT finished here
  assert _leftovers(wd) == []

  # 3. The rerun finishes: LEVI resumed, FT's result read from the store.
  p, so, se = _start(wd, tmp_path / "last")
  assert p.wait(timeout=300) == 0, se.read_text()[-3000:]
  err, out = se.read_text(), so.read_text()
  assert re.search(r"resuming levi_light seed 0 from epoch \d+ of 40", err), err
  assert "ft seed 0 (stored)" in err
  summary = out.strip().splitlines()[-1]
  assert re.match(r"components: 1 trained, 1 read from the store; method results: 1 "
                  r"computed, 1 read from the store; 0 failed; [\d.]+ s wall; wrote ", summary)
  assert _leftovers(wd) == [] and _step_dirs(wd) == []
