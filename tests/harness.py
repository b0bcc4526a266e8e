"""Helpers for tests that build a Context in-process (smoke preset)."""
from __future__ import annotations

from benchmark import configs
from benchmark.components import Context
from benchmark.models import BACKBONES
from benchmark.store import RunStore
from datasets import DATASETS


def smoke_config(dataset: str = "synthetic_spurious", **overrides):
  base = configs.base_config({n: DATASETS.get(n).data_defaults for n in DATASETS},
                             {n: BACKBONES.get(n).defaults for n in BACKBONES})
  return configs.build("smoke", DATASETS.get(dataset).presets, base, overrides)


def smoke_context(workdir, dataset: str = "synthetic_spurious", data_dir=None,
                  **overrides) -> Context:
  config = smoke_config(dataset, **overrides)
  splits = DATASETS.get(dataset).load(config, data_dir)
  spec = DATASETS.get(dataset)
  return Context(splits, config, spec.default_backbone, RunStore(workdir))
