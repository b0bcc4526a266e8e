"""docs/extending.md shows the code that runs: every ``python`` block copied
from a file must still appear in that file verbatim."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("methods/l2sp.py", "methods/surgical.py", "methods/levi_batchensemble.py",
           "methods/__init__.py", "benchmark/models/tabular.py",
           "datasets/synthetic_spurious.py", "datasets/amazon.py")


def test_every_code_block_is_in_the_source():
  doc = (ROOT / "docs" / "extending.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
  assert len(blocks) >= 6
  sources = {p: (ROOT / p).read_text() for p in SOURCES}
  for b in blocks:
    assert any(b.strip() in s for s in sources.values()), b[:200]
