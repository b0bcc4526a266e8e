"""Claims on a shared store (``benchmark.locks``): when a claim is stale (a
dead pid on this host; no refresh for ``stale_s`` from another host), when it
is live and waited on, and that the wait is bounded and names what it waited
for."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from benchmark import locks
from benchmark.runner import ClaimTimeout
from tests.harness import smoke_context


def _write_claim(path, host, pid, age_s=0.0):
  path.write_text(json.dumps({"host": host, "pid": pid, "since": time.time() - age_s}))
  t = time.time() - age_s
  os.utime(path, (t, t))


def _dead_pid() -> int:
  p = subprocess.Popen([sys.executable, "-c", "pass"])
  p.wait(timeout=60)
  return p.pid   # reaped: no process has it (pids are not reused this fast)


def test_dead_pid_on_this_host_is_stale_at_once_and_broken(tmp_path):
  lock = tmp_path / "k.lock"
  _write_claim(lock, socket.gethostname(), _dead_pid())
  assert locks.is_stale(lock, stale_s=3600)   # fresh mtime, but its owner is gone
  claim = locks.try_claim(lock, stale_s=3600)
  assert claim is not None
  assert locks.owner(lock)["pid"] == os.getpid()
  claim.release()
  assert not lock.exists() and not list(tmp_path.glob("*.stale-*"))


def test_live_pid_on_this_host_is_never_stale_however_old(tmp_path):
  lock = tmp_path / "k.lock"
  _write_claim(lock, socket.gethostname(), os.getpid(), age_s=10_000)
  assert not locks.is_stale(lock, stale_s=60)
  assert locks.try_claim(lock, stale_s=60) is None
  assert locks.describe(lock) == f"pid {os.getpid()} on {socket.gethostname()}"


def test_another_hosts_claim_is_stale_only_once_not_refreshed_for_stale_s(tmp_path):
  lock = tmp_path / "k.lock"
  _write_claim(lock, "some-other-host.invalid", 1, age_s=30)
  assert not locks.is_stale(lock, stale_s=60)     # its pid means nothing here: time only
  assert locks.try_claim(lock, stale_s=60) is None
  _write_claim(lock, "some-other-host.invalid", 1, age_s=120)
  assert locks.is_stale(lock, stale_s=60)
  claim = locks.try_claim(lock, stale_s=60)
  assert claim is not None and locks.owner(lock)["host"] == socket.gethostname()
  claim.release()


def test_missing_claim_is_not_stale(tmp_path):
  assert not locks.is_stale(tmp_path / "none.lock")


def test_a_held_claim_is_refreshed(tmp_path):
  lock = tmp_path / "k.lock"
  claim = locks.try_claim(lock, refresh_s=0.05)
  past = time.time() - 1000
  os.utime(lock, (past, past))
  deadline = time.monotonic() + 10
  while lock.stat().st_mtime < past + 500 and time.monotonic() < deadline:
    time.sleep(0.02)
  assert lock.stat().st_mtime > past + 500, "the owner's thread did not refresh its claim"
  claim.release()
  assert not lock.exists()


def test_a_live_claim_is_waited_on_then_its_record_is_read(tmp_path):
  # Train once elsewhere, hold the claim in the shared store, and let the
  # record appear while the second context waits: it reads it, trains nothing.
  done = smoke_context(tmp_path / "done")
  spec = done.spec("fs", 0)
  rec = done.component(spec).record
  src = done.store.component_path(spec.kind, spec.key)

  ctx = smoke_context(tmp_path / "shared")
  ctx.runner.claim_poll_s = 0.05
  dst = ctx.store.component_path(spec.kind, spec.key)
  dst.parent.mkdir(parents=True, exist_ok=True)
  claim = locks.try_claim(dst.with_name(spec.key + ".lock"))

  def finish():
    time.sleep(1.0)
    for f in src.parent.glob(spec.key + "*"):
      shutil.copy(f, dst.parent / f.name)
    claim.release()

  t = threading.Thread(target=finish)
  t.start()
  got = ctx.component(spec)
  t.join()
  assert got.record["scores"] == rec["scores"]
  assert ctx.trained == [] and spec.key in ctx.loaded


def test_the_wait_for_a_live_claim_is_bounded_and_names_what_it_waited_for(tmp_path):
  ctx = smoke_context(tmp_path)
  ctx.runner.claim_poll_s, ctx.runner.claim_wait_s = 0.05, 0.3
  spec = ctx.spec("fs", 0)
  path = ctx.store.component_path(spec.kind, spec.key)
  path.parent.mkdir(parents=True, exist_ok=True)
  claim = locks.try_claim(path.with_name(spec.key + ".lock"))
  try:
    t0 = time.monotonic()
    with pytest.raises(ClaimTimeout) as e:
      ctx.component(spec)
    assert time.monotonic() - t0 < 30
  finally:
    claim.release()
  msg = str(e.value)
  assert f"fs seed 0 [{spec.key}]" in msg and f"pid {os.getpid()}" in msg
  assert "LEVI_CLAIM_WAIT_S" in msg and ctx.trained == []
