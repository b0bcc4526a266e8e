"""Networks: backbones exposing their intermediate layers, small task models,
heads and adapting layers. Backbones and small models are registered here by
name; ``run_benchmark.py --list`` prints them."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from flax import nnx

from benchmark.registry import Registry


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A large model family.

  ``build(info, cfg, rngs)`` returns a module with ``__call__(view, train) ->
  taps``, ``tap_dims``, ``feature_dim``, ``num_blocks`` and ``block_patterns()``.
  ``source`` says where pre-trained weights come from: ``"pretrain_split"``
  (trained here on the benchmark's ``pretrain`` rows) or ``"checkpoint"``
  (``load(cfg, model)`` reads published weights from disk).
  """
  name: str
  modality: str
  build: Callable[..., nnx.Module]
  source: str
  defaults: Mapping[str, Any]
  description: str
  load: Callable[..., None] | None = None


BACKBONES: Registry[Backbone] = Registry("backbone")


def _tabular_build(info, cfg, rngs):
  from benchmark.models.tabular import TabularMLP
  return TabularMLP(info.large_spec, tuple(cfg.hidden), int(cfg.embed_dim), rngs=rngs)


BACKBONES.add("tabular_mlp", Backbone(
    name="tabular_mlp", modality="tabular", build=_tabular_build,
    source="pretrain_split", defaults={"hidden": (64, 64, 64), "embed_dim": 16},
    description="MLP over a tabular view, 3 hidden layers = 3 tapped blocks, "
                "pre-trained on the benchmark's pretrain rows"))
