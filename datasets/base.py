"""The benchmark registry. A benchmark module registers a ``DatasetSpec``
whose ``load(config, data_dir)`` returns ``ShiftSplits``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from benchmark.data import ShiftSplits
from benchmark.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  name: str
  description: str
  load: Callable[[Any, str | None], ShiftSplits]   # (full config, --data_dir)
  default_backbone: str
  data_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
