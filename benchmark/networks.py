"""Networks of components: the large and small models as a dataset and
backbone need them, and each kind's network and freezing rules (no weights).

``Networks.model_and_rules(kind, config, rngs)`` asks the kind
(``ComponentKind.network``) for its module; the building blocks a kind uses
(``build_large``, ``build_small``, ``build_large_lora``, ``top_half_rules``)
live here so that no kind repeats them. Loading weights is the runner's job.
"""
from __future__ import annotations

from typing import Any, Mapping

from flax import nnx

from benchmark.data import DatasetInfo
from benchmark.kinds import KINDS
from benchmark.models import Backbone
from benchmark.models.small import EmbeddingMLP, SmallCNN


class Networks:

  def __init__(self, info: DatasetInfo, config, backbone: Backbone):
    self.info, self.config, self.backbone = info, config, backbone
    self.backbone_cfg = config.backbones[backbone.name]
    self.out_dim = info.out_dim

  def build_large(self, rngs: nnx.Rngs) -> nnx.Module:
    return self.backbone.build(self.info, self.backbone_cfg, rngs)

  def build_small(self, rngs: nnx.Rngs) -> nnx.Module:
    m = self.config.model
    if "image" in self.info.small_spec:  # vision: the 4-layer CNN (App. D.2)
      return SmallCNN(self.info.small_spec, tuple(m.cnn_features), rngs=rngs)
    return EmbeddingMLP(self.info.small_spec, tuple(m.small_hidden), int(m.embed_dim), rngs=rngs)

  def build_large_lora(self, config: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    """The large model with LoRA factors on its attention projections."""
    from benchmark.models.lora import add_lora
    large = self.build_large(rngs)
    c = config["lora"]
    add_lora(large, c["targets"], c["rank"], c["alpha"], rngs, what=self.backbone.name)
    return large

  @staticmethod
  def top_half_rules(large) -> list[tuple[str, bool]]:
    """Light-tuning: the top half of the large model's blocks train (HT)."""
    pats = large.block_patterns()
    top = pats[len(pats) // 2:]
    return [(rf"^large/{p}", True) for p in top] + [(r"^large/", False)]

  def model_and_rules(self, kind: str, config: Mapping[str, Any], rngs: nnx.Rngs
                      ) -> tuple[nnx.Module, list[tuple[str, bool]]]:
    """Component ``kind``'s network (random weights) and freezing rules, from
    its spec config; nothing loaded (``structure`` runs it without weights)."""
    return KINDS.get(kind).network(self, config, rngs)

  def structure(self, kind: str, config: Mapping[str, Any]
                ) -> tuple[nnx.Module, list[tuple[str, bool]]]:
    """``model_and_rules`` as shapes only (``nnx.eval_shape``): for counting
    parameters and compiling cost analyses without weights."""
    holder = {}

    def make():
      model, rules = self.model_and_rules(kind, config, nnx.Rngs(0))
      holder["rules"] = rules
      return model
    model = nnx.eval_shape(make)
    return model, holder["rules"]
