"""Spec building: config in, component specs and their store keys out (pure).

A ``ComponentSpec`` names one training ("FT of backbone B on dataset D, lr l,
seed s") by its full config; its key is the hash of that config and of its
dependencies' keys. ``SpecBuilder`` makes the spec of any registered kind
(``benchmark.kinds``) from the config, the dataset's description and the
learning rates chosen so far, which it takes as a value (``with_lrs``): no
weights are loaded and nothing is trained here.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

from flax import nnx

from benchmark.data import ShiftSplits
from benchmark.errors import UserError
from benchmark.kinds import KINDS, ComponentKind
from benchmark.models import Backbone
from benchmark.store import key_of


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
  kind: str
  seed: int
  config: Mapping[str, Any]
  deps: tuple[tuple[str, "ComponentSpec"], ...] = ()

  @functools.cached_property
  def key(self) -> str:
    return key_of({"kind": self.kind, "seed": self.seed, "config": self.config,
                   "deps": {n: d.key for n, d in self.deps}})

  def dep(self, name: str) -> "ComponentSpec":
    return dict(self.deps)[name]

  def all_specs(self) -> list["ComponentSpec"]:
    """This spec and everything it depends on, dependencies first."""
    out = []
    for _, d in self.deps:
      out += [s for s in d.all_specs() if s.key not in {o.key for o in out}]
    return out + [self]


class SpecBuilder:
  """Specs of every kind for one dataset, backbone and config.

  ``lrs`` maps a kind to its chosen learning rate (the protocol's choice);
  kinds without one use ``config.lr.<lr_key>``."""

  def __init__(self, splits: ShiftSplits, config, backbone: Backbone, fingerprint: str,
               structure_only: bool = False, lrs: Mapping[str, float] | None = None,
               shared: dict | None = None):
    self.splits, self.info, self.config = splits, splits.info, config
    self.backbone, self.backbone_cfg = backbone, config.backbones[backbone.name]
    self.fingerprint = fingerprint
    self.structure_only = structure_only
    self.lrs: Mapping[str, float] = dict(lrs or {})
    # Derived once per dataset and shared by every copy (``with_lrs``):
    # the weights' digest, the large model's shape, auxiliary fingerprints.
    self._shared = {} if shared is None else shared

  def with_lrs(self, lrs: Mapping[str, float]) -> "SpecBuilder":
    """The same builder with ``lrs`` chosen on top of the current choices."""
    return SpecBuilder(self.splits, self.config, self.backbone, self.fingerprint,
                       self.structure_only, {**self.lrs, **lrs}, self._shared)

  # -- the parts every kind's config is made of -----------------------------------
  def common(self, kind: str, with_lr: bool = True) -> dict:
    """Training settings shared by every kind, and the learning rate of
    ``kind`` (its chosen one, else ``config.lr.<lr_key>``)."""
    c = self.config
    out = {"dataset": self.info.name, "data": self.fingerprint,
           "optimizer": c.optimizer, "momentum": c.momentum if c.optimizer == "sgd" else None,
           "weight_decay": c.weight_decay, "batch_size": c.batch_size,
           "epochs": c.epochs, "eval_every": c.eval_every}
    k = KINDS.get(kind)
    if with_lr and k.lr_key:
      out["lr"] = float(self.lrs.get(k.lr_kind, c.lr[k.lr_key]))
    if self.info.task == "regression":
      out["label_scale"] = list(self.label_scale())
    return out

  def label_scale(self, split: str = "train") -> tuple[float, float]:
    import numpy as np
    from benchmark.trainer import label_scale
    return label_scale(self.info.task, np.asarray(getattr(self.splits, split).label))

  def large_cfg(self) -> dict:
    cfg = {"name": self.backbone.name, "cfg": self.backbone_cfg.to_dict()}
    if self.backbone.source == "checkpoint":
      cfg["weights"] = self.weights_key()
    return cfg

  def weights_key(self) -> str:
    if self.backbone.weights_key is None:
      return self.backbone.name
    if self.structure_only:
      return "structure-only"
    if "weights" not in self._shared:
      self._shared["weights"] = self.backbone.weights_key(self.backbone_cfg)
    return self._shared["weights"]

  def small_cfg(self) -> dict:
    m = self.config.model
    if "image" in self.info.small_spec:
      return {"cnn": list(m.cnn_features)}
    return {"hidden": list(m.small_hidden), "embed_dim": m.embed_dim}

  def lora_cfg(self) -> dict:
    if self.backbone.lora_targets is None:
      raise UserError(f"backbone {self.backbone.name} has no LoRA targets; the lora and "
                      f"levi_lora methods need a backbone with attention projections "
                      f"(Backbone.lora_targets)")
    c = self.config.lora
    return {"rank": int(c.rank), "alpha": float(c.alpha), "targets": self.backbone.lora_targets}

  def oov_cfg(self, kind: ComponentKind) -> dict:
    """``{"oov_rate": r}`` for a network whose trained embeddings read a
    categorical view (``cat_vocab``): the small model's, or the large model's
    when it trains; nothing otherwise, nor when the rate is 0."""
    rate = float(self.config.model.oov_rate)
    cats = ((kind.small and "cat_vocab" in self.info.small_spec)
            or (kind.trains_large and "cat_vocab" in self.info.large_spec))
    return {"oov_rate": rate} if cats and rate > 0 else {}

  def cap_cfg(self, kind: ComponentKind) -> dict:
    """``{"max_train": n}`` for a kind whose ID training rows
    ``protocol.max_train_large`` caps (``ComponentKind.is_capped``): the
    runner trains it on ``data.cap_train(.., n)``; nothing when the cap is 0."""
    n = int(self.config.protocol.max_train_large)
    return {"max_train": n} if n and kind.is_capped else {}

  # -- the large model's shape (no weights) -------------------------------------
  @property
  def large_template(self) -> nnx.Module:
    if "template" not in self._shared:
      self._shared["template"] = nnx.eval_shape(
          lambda: self.backbone.build(self.info, self.backbone_cfg, nnx.Rngs(0)))
    return self._shared["template"]

  def num_blocks(self) -> int:
    return self.large_template.num_blocks

  # -- specs ----------------------------------------------------------------------
  def spec(self, kind: str, seed: int, **options) -> ComponentSpec:
    """The spec of component ``kind`` for ``seed`` under the current config;
    ``options`` are the kind's own (e.g. ``tap`` of a layer probe)."""
    k = KINDS.get(kind)
    if k.loss_term is not None and not k.pretrained:
      raise UserError(f"component kind {kind!r} has a loss term towards its start point "
                      f"but starts from random weights (pretrained=False); give it a "
                      f"pre-trained start or drop loss_term")
    cfg = dict(k.config(self, seed, **options))
    cfg.update(self.oov_cfg(k))
    cfg.update(self.cap_cfg(k))
    deps = tuple(k.deps(self, seed, **options)) if k.deps is not None else ()
    if k.pretrained:
      deps = self.with_pretrain(deps)
    own_seed = int(k.seed(self, seed)) if k.seed is not None else int(seed)
    return ComponentSpec(kind, own_seed, cfg, deps)

  def spec_with_lr(self, kind: str, seed: int, lr: float, **options) -> ComponentSpec:
    """``spec(kind, seed)`` trained at learning rate ``lr`` (a grid point)."""
    return self.with_lrs({KINDS.get(kind).lr_kind: float(lr)}).spec(kind, seed, **options)

  def pretrain_spec(self) -> ComponentSpec | None:
    if self.backbone.source != "pretrain_split":
      return None
    if self.splits.pretrain is None:
      raise UserError(f"backbone {self.backbone.name} is pre-trained on the dataset's "
                      f"pretrain rows, and {self.info.name} has none; add rows with "
                      f"split 'pretrain' or choose another --backbone")
    return self.spec("pretrain", int(self.config.pretrain.seed))

  def with_pretrain(self, deps=()) -> tuple:
    pre = self.pretrain_spec()
    return (tuple(deps) + (("pretrain", pre),)) if pre is not None else tuple(deps)

  # -- LEVI settings ---------------------------------------------------------------
  def levi_taps(self) -> tuple[int, ...]:
    n = self.num_blocks()
    t = str(self.config.levi.taps).strip()
    if t == "all":
      return tuple(range(n))
    try:
      taps = tuple(int(x) for x in t.split(","))
    except ValueError:
      raise UserError(f"config levi.taps={t!r}: use 'all' or comma-separated block "
                      f"indices, e.g. --config.levi.taps=0,2")
    if not taps or any(not -n <= x < n for x in taps):
      raise UserError(f"config levi.taps={t!r}: {self.backbone.name} has blocks 0..{n - 1}")
    return tuple(x % n for x in taps)

  def levi_loss_weights(self) -> list[float] | None:
    w = str(self.config.levi.loss_weights).strip()
    if not w:
      return None
    ws = [float(x) for x in w.split(",")]
    if len(ws) != len(self.levi_taps()):
      raise UserError(f"config levi.loss_weights has {len(ws)} weights for "
                      f"{len(self.levi_taps())} adapting layers; give one per tap")
    s = sum(ws)
    return [x / s for x in ws]

  def num_a5_heads(self) -> int:
    return int(self.config.model.a5_heads) or len(self.levi_taps())

  # -- auxiliary tasks (Model Ratatouille) ---------------------------------------
  def aux_names(self) -> list[str]:
    """The auxiliary tasks to recycle: ``ratatouille.aux`` (comma-separated),
    empty = every task the dataset declares."""
    declared = list(self.splits.aux)
    if not declared:
      raise UserError(f"dataset {self.info.name} declares no auxiliary tasks, which "
                      f"ratatouille fine-tunes on; use a dataset that does (its "
                      f"ShiftSplits.aux; a tabular CSV with aux:<task>:train/val rows)")
    text = str(self.config.ratatouille.aux).strip()
    if not text:
      return declared
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in declared]
    if bad or not names:
      raise UserError(f"config ratatouille.aux={text!r}: {self.info.name} declares the "
                      f"auxiliary tasks {', '.join(declared)}; give some of them, or "
                      f"nothing for all")
    return list(dict.fromkeys(names))

  def aux_task(self, name: str):
    self.aux_names()  # the dataset has some
    if name not in self.splits.aux:
      raise UserError(f"{self.info.name} has no auxiliary task {name!r}; it declares "
                      f"{', '.join(self.splits.aux)}")
    return self.splits.aux[name]

  def aux_fingerprint(self, name: str) -> str:
    fps = self._shared.setdefault("aux", {})
    if name not in fps:
      fps[name] = self.aux_task(name).fingerprint()
    return fps[name]
