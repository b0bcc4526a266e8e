"""The suite itself: no network and no user cache (tests/conftest.py). A
test that would fetch a wheel fails; so does a subprocess that would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import fetch

ROOT = Path(__file__).resolve().parents[1]


def test_cache_is_the_sessions_own_and_seeded():
  cache = fetch.cache_dir()
  assert cache == Path(os.environ["LEVI_CACHE"])
  assert not cache.resolve().is_relative_to(Path.home().resolve() / ".cache")
  assert "levi-test-cache-" in str(cache)
  assert sorted((cache / "wheels").glob("recbole-1.2.1-*.whl")), (
      "the recbole wheel was not seeded: run make test-data")
  assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["LEVI_OFFLINE"] == "1"


def test_a_fetch_in_the_test_process_fails_the_test():
  with pytest.raises(pytest.fail.Exception, match="would call pip download"):
    fetch.wheel("levi-no-such-package==0.0", "levi_no_such_package-*.whl", "no fallback")
  # Even with the cache check bypassed, the pip call itself fails the test.
  with pytest.raises(pytest.fail.Exception, match="called pip download"):
    fetch.subprocess.run([sys.executable, "-m", "pip", "download", "x"])


def test_a_fetch_in_a_subprocess_is_refused_with_levi_offline():
  code = ("from benchmark import fetch\n"
          "fetch.wheel('levi-no-such-package==0.0', 'levi_no_such_package-*.whl', 'fb')")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)
  assert p.returncode != 0
  assert "LEVI_OFFLINE is set: not fetching levi-no-such-package==0.0" in p.stderr
