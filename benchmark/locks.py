"""Claims on work in a shared run store, so that several processes (``--shard``
jobs, on one machine or on hosts sharing a filesystem) never train the same
component twice.

A claim is a lock file created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (atomic
on local filesystems and NFSv3+; never a file or symlink someone placed there)
and mode 0666 less the umask, holding the owner's host, pid and start time;
it is read without following symlinks, and only as much as a claim holds. While
held, a thread refreshes its modification time. A claim is stale, and may be
broken by another process, when its owner is a dead process on the same host,
or when it has not been refreshed for ``stale_s`` seconds (an owner on another
host that died). Breaking renames the lock file aside first, so two processes
breaking one stale claim cannot both win.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

STALE_S = 300.0   # a claim not refreshed for this long is abandoned
REFRESH_S = 30.0  # how often a live owner refreshes its claim

# The claims this process holds, so that a process stopping at once (a peer
# died: ``multihost``) can give them up without unwinding.
_HELD: set = set()


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


class Claim:
  """A held claim; ``release()`` (or leaving the ``with`` block) gives it up."""

  def __init__(self, path: Path, refresh_s: float):
    self.path = path
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True)
    self._thread.start()
    _HELD.add(self)

  def _refresh(self, every: float) -> None:
    while not self._stop.wait(every):
      with contextlib.suppress(OSError, NotImplementedError):
        os.utime(self.path, follow_symlinks=False)

  def release(self) -> None:
    _HELD.discard(self)
    self._stop.set()
    self._thread.join()
    with contextlib.suppress(FileNotFoundError):
      self.path.unlink()

  def __enter__(self) -> "Claim":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


_MAX_CLAIM_BYTES = 4096   # a claim is one short JSON line


def owner(path: Path) -> dict | None:
  """Who holds the claim at ``path`` (host, pid, since), or None. A symlink,
  a FIFO or a device put there instead is not read (it could block or never
  end)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                 | getattr(os, "O_CLOEXEC", 0))
  except OSError:
    return None
  try:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      return None
    who = json.loads(os.read(fd, _MAX_CLAIM_BYTES).decode("utf-8"))
    return who if isinstance(who, dict) else None
  except (OSError, ValueError):
    return None
  finally:
    os.close(fd)


def is_stale(path: Path, stale_s: float = STALE_S) -> bool:
  try:
    age = time.time() - path.lstat().st_mtime
  except FileNotFoundError:
    return False
  who = owner(path)
  if who is not None and who.get("host") == socket.gethostname():
    pid = who.get("pid")
    if type(pid) is int and pid > 0:   # 0 and -1 would ask about whole process groups
      return not _pid_alive(pid)
  return age > stale_s  # unreadable, or another host's: only time tells


def try_claim(path: Path, stale_s: float = STALE_S,
              refresh_s: float = REFRESH_S) -> Claim | None:
  """The claim at ``path`` if this process gets it, else None (held by a live
  owner). A stale claim is broken and taken."""
  path.parent.mkdir(parents=True, exist_ok=True)
  me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY
                   | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
      if not is_stale(path, stale_s):
        return None
      aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{time.time_ns()}")
      try:
        os.rename(path, aside)  # only one breaker's rename finds the file
      except FileNotFoundError:
        continue
      if not is_stale(aside, stale_s):
        # Another breaker replaced the stale claim with its own in between:
        # put that live claim back (link fails if yet another one exists).
        with contextlib.suppress(OSError):
          os.link(aside, path)
        aside.unlink()
        return None
      aside.unlink()
      continue
    with os.fdopen(fd, "w") as f:
      f.write(me)
      f.flush()
      os.fsync(f.fileno())
    return Claim(path, refresh_s)
  return None


def release_all_held() -> None:
  """Removes every claim this process holds (it is about to exit at once)."""
  for claim in list(_HELD):
    _HELD.discard(claim)
    with contextlib.suppress(OSError):
      claim.path.unlink()


def describe(path: Path) -> str:
  who = owner(path)
  if who is None:
    return "another process"
  return f"pid {who.get('pid')} on {who.get('host')}"
