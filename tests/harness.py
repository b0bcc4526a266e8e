"""Helpers for tests that build a Context in-process (smoke preset), through
the harness's one setup path (``benchmark.setup``)."""
from __future__ import annotations

from benchmark import setup
from benchmark.components import Context


def smoke_config(dataset: str = "synthetic_spurious", **overrides):
  return setup.resolve_config(dataset, "smoke", overrides)


def smoke_context(workdir, dataset: str = "synthetic_spurious", data_dir=None,
                  **overrides) -> Context:
  config = smoke_config(dataset, **overrides)
  return setup.load_context(dataset, config, None, workdir, data_dir=data_dir)
