"""The one setup path from a dataset name to a ``Context``: spec, backbone,
config, weights check, splits.

The CLI (method runs, tables, figures, Table 3), ``benchmark.perf``, the
tools and the tests' helpers all build their config and context here, so a
default (a registry's data or backbone defaults, the preset layers) means the
same everywhere::

  config = setup.resolve_config("synthetic_spurious", "smoke", {"epochs": 2})
  backbone = setup.backbone_for("synthetic_spurious")
  setup.check_weights(backbone, config)       # before anything is trained
  ctx = setup.load_context("synthetic_spurious", config, backbone, "/tmp/wd")

Reads the dataset and backbone registries; never the methods.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import ml_collections

from benchmark import configs
from benchmark.models import BACKBONES
from benchmark.store import RunStore
from datasets import DATASETS


def base_config() -> ml_collections.ConfigDict:
  """``configs.base_config`` with every registered dataset's ``data_defaults``
  and every backbone's ``defaults``: the config every key of an override is
  checked against."""
  return configs.base_config({n: DATASETS.get(n).data_defaults for n in DATASETS},
                             {n: BACKBONES.get(n).defaults for n in BACKBONES})


def resolve_config(dataset: str, preset: str, overrides: Mapping[str, Any] | None = None,
                   base: ml_collections.ConfigDict | None = None
                   ) -> ml_collections.ConfigDict:
  """The locked config for ``dataset`` under ``preset``: ``base`` (default
  ``base_config()``), the preset's generic and dataset layers, then
  ``overrides`` (dotted keys)."""
  spec = DATASETS.get(dataset)
  return configs.build(preset, spec.presets, base_config() if base is None else base,
                       dict(overrides or {}))


def backbone_for(dataset: str, backbone: str | None = None) -> str:
  """``backbone`` when given, else the dataset's default large model."""
  return backbone or DATASETS.get(dataset).default_backbone


def check_weights(backbone: str, config) -> None:
  """A backbone with published weights: they are present and readable (else a
  UserError naming the config key that gives them). Cheap; run it before
  anything is trained or written."""
  bb = BACKBONES.get(backbone)
  if bb.weights_key is not None:
    bb.weights_key(config.backbones[backbone])


def load_splits(dataset: str, config, data_dir: str | None = None):
  """The dataset's ``ShiftSplits`` under ``config`` (files from ``data_dir``)."""
  return DATASETS.get(dataset).load(config, data_dir)


def load_context(dataset: str, config, backbone: str | None,
                 store: RunStore | str | Path, data_dir: str | None = None,
                 progress: Callable[[str], None] | None = None,
                 structure_only: bool = False, splits=None):
  """A ``Context`` for ``dataset`` with ``backbone`` (None: the dataset's
  default) over ``store`` (a RunStore or its workdir). ``splits``, when
  given, are used as they are (e.g. shapes only, for counting); else the
  dataset is loaded, said through ``progress``."""
  from benchmark.components import Context  # JAX is imported with it
  if not isinstance(store, RunStore):
    store = RunStore(store)
  if splits is None:
    if progress is not None:
      progress(f"loading {dataset} (preset {config.preset})")
    splits = load_splits(dataset, config, data_dir)
  return Context(splits, config, backbone_for(dataset, backbone), store, progress=progress,
                 structure_only=structure_only)
