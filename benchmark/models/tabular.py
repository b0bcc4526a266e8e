"""``tabular_mlp``: the tabular large model. An MLP whose hidden layers are its
blocks; every block's output is a tap. Pre-trained here, on a benchmark's
``pretrain`` rows, as a component like any other (paper App. E.8: "a 3-layer
network as the pre-trained model")."""
from __future__ import annotations

from typing import Any, Mapping

import jax
from flax import nnx

from benchmark.models.backbone import BACKBONES, Backbone
from benchmark.models.features import FeatureEmbed


class TabularMLP(nnx.Module):
  """Large-model interface: ``__call__(view, train) -> taps`` (bottom to top,
  each ``[batch, dim]``), ``feature_dim``, ``tap_dims``, ``block_patterns``."""

  def __init__(self, spec: Mapping[str, Any], hidden: tuple[int, ...],
               embed_dim: int, *, rngs: nnx.Rngs):
    self.embed = FeatureEmbed(spec, embed_dim, rngs=rngs)
    dims = (self.embed.out_dim, *hidden)
    self.blocks = nnx.List([nnx.Linear(dims[i], dims[i + 1], rngs=rngs)
                            for i in range(len(hidden))])
    self.tap_dims = tuple(hidden)
    self.feature_dim = hidden[-1]

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

  def block_patterns(self) -> list[str]:
    """Regex (relative to this module) for each block's parameters."""
    return [rf"blocks/{i}/" for i in range(self.num_blocks)]

  def __call__(self, view, *, train: bool = False) -> list[jax.Array]:
    del train
    h = self.embed(view)
    taps = []
    for block in self.blocks:
      h = jax.nn.relu(block(h))
      taps.append(h)
    return taps


def _tabular_build(info, cfg, rngs):
  return TabularMLP(info.large_spec, tuple(cfg.hidden), int(cfg.embed_dim), rngs=rngs)


BACKBONES.add("tabular_mlp", Backbone(
    name="tabular_mlp", modality="tabular", build=_tabular_build,
    source="pretrain_split", defaults={"hidden": (64, 64, 64), "embed_dim": 16},
    description="MLP over a tabular view, 3 hidden layers = 3 tapped blocks, "
                "pre-trained on the benchmark's pretrain rows"))
