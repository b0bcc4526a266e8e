"""Components: trained networks that methods are recipes over.

``Context`` is what a method sees for one dataset: the splits and config, the
spec of any component kind (``benchmark.specs``, pure), its network
(``benchmark.networks``) and get-or-train against the store
(``benchmark.runner``). ``ctx.component(spec)`` returns the stored result or
trains it once, so FT for a seed serves ``ft``, ``ft_zeroshot``, ``ft_robust``,
``ft_fs``, ``a1`` and ``a2`` alike, within one invocation and across them.
Learning rates chosen by the protocol are a value: ``ctx.with_lrs(choices)``
is a context whose specs use them.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

import numpy as np
from flax import nnx

from benchmark import trainer as T
from benchmark.data import ShiftSplits
from benchmark.errors import UserError
from benchmark.kinds import FROZEN, FULL, KINDS, LIGHT, LORA  # noqa: F401  (re-exported)
from benchmark.models import BACKBONES, Backbone
from benchmark.networks import Networks
from benchmark.runner import ComponentFailed, ComponentResult, ComponentRunner  # noqa: F401
from benchmark.specs import ComponentSpec, SpecBuilder  # noqa: F401
from benchmark.store import RunStore
import benchmark.builtin_kinds  # noqa: F401,E402  (registers the built-in kinds)


class Context:
  """Everything a method needs for one dataset: splits, config, backbone,
  specs, networks, and get-or-train for components."""

  def __init__(self, splits: ShiftSplits, config, backbone: str, store: RunStore,
               progress: Callable[[str], None] | None = None, structure_only: bool = False):
    # structure_only: no weights, no tokenizer (large views must already be
    # token arrays); for counting parameters and FLOPs (Table 3).
    self.structure_only = structure_only
    self.info = splits.info
    self.task = splits.info.task
    self.config = config
    self.backbone: Backbone = BACKBONES.get(backbone)
    if self.backbone.modality != self.info.modality:
      valid = [n for n in BACKBONES if BACKBONES.get(n).modality == self.info.modality]
      raise UserError(f"backbone {backbone!r} takes {self.backbone.modality} inputs but "
                      f"dataset {self.info.name!r} is {self.info.modality}; use "
                      f"--backbone {' or '.join(valid)}")
    self.store = store
    self.backbone_cfg = config.backbones[backbone]
    if self.backbone.prepare is not None and not structure_only:  # sentences -> tokens
      splits = splits.map_large(_prepare_once(splits, self.backbone.prepare, self.backbone_cfg))
    self.fingerprint = splits.fingerprint()
    self.progress = progress or (lambda msg: None)
    self.specs = SpecBuilder(splits, config, self.backbone, self.fingerprint, structure_only)
    self.nets = Networks(self.info, config, self.backbone)
    self.runner = ComponentRunner(splits, config, self.specs, self.nets, store, self.progress)

  def with_lrs(self, lrs: Mapping[str, float]) -> "Context":
    """This context with learning rates ``lrs`` chosen per kind (the
    protocol's choices): its specs use them; store, runner and caches are
    shared."""
    new = copy.copy(self)
    new.specs = self.specs.with_lrs(lrs)
    return new

  @property
  def splits(self) -> ShiftSplits:
    return self.specs.splits

  @splits.setter
  def splits(self, splits: ShiftSplits) -> None:
    """Replaces the splits everywhere (tests; the fingerprint stays)."""
    self.specs.splits = self.runner.splits = splits

  @property
  def lrs(self) -> Mapping[str, float]:
    return self.specs.lrs

  # -- specs (pure) --------------------------------------------------------------
  def spec(self, kind: str, seed: int, **options) -> ComponentSpec:
    return self.specs.spec(kind, seed, **options)

  def spec_with_lr(self, kind: str, seed: int, lr: float, **options) -> ComponentSpec:
    return self.specs.spec_with_lr(kind, seed, lr, **options)

  def pretrain_spec(self) -> ComponentSpec | None:
    return self.specs.pretrain_spec()

  def layer_probe_spec(self, tap: int, seed: int) -> ComponentSpec:
    """Figure 4: one adapting layer on block ``tap`` of the frozen pre-trained
    large model, alone (no small model); trains on cached taps."""
    return self.specs.spec("layer_probe", seed, tap=tap)

  def aux_spec(self, kind: str, aux: str, seed: int) -> ComponentSpec:
    return self.specs.spec(kind, seed, aux=aux)

  def aux_names(self) -> list[str]:
    return self.specs.aux_names()

  def aux_task(self, name: str):
    return self.specs.aux_task(name)

  def levi_taps(self) -> tuple[int, ...]:
    return self.specs.levi_taps()

  def levi_loss_weights(self) -> list[float] | None:
    return self.specs.levi_loss_weights()

  def num_a5_heads(self) -> int:
    return self.specs.num_a5_heads()

  def num_blocks(self) -> int:
    return self.specs.num_blocks()

  # -- networks -------------------------------------------------------------------
  def build_large(self, rngs: nnx.Rngs) -> nnx.Module:
    return self.nets.build_large(rngs)

  def build_small(self, rngs: nnx.Rngs) -> nnx.Module:
    return self.nets.build_small(rngs)

  def model_and_rules(self, kind: str, config, rngs: nnx.Rngs):
    return self.nets.model_and_rules(kind, config, rngs)

  def structure(self, kind: str):
    """``model_and_rules`` of ``kind`` as shapes only (``nnx.eval_shape``)."""
    config = (self.pretrain_spec() if kind == "pretrain" else self.spec(kind, 0)).config
    return self.nets.structure(kind, config)

  # -- weights and training ----------------------------------------------------------
  def component(self, spec: ComponentSpec) -> ComponentResult:
    return self.runner.component(spec)

  def build(self, spec: ComponentSpec):
    return self.runner.build(spec)

  def training_data(self, spec: ComponentSpec):
    return self.runner.training_data(spec)

  def pretrained_large(self) -> dict[str, np.ndarray]:
    return self.runner.pretrained_large()

  def load_pretrained(self, model) -> None:
    self.runner.load_pretrained(model)

  @property
  def trained(self) -> list[str]:
    return self.runner.trained

  @property
  def loaded(self) -> list[str]:
    return self.runner.loaded

  @property
  def methods_reused(self) -> int:
    """Method results read back from the store (by this context and its
    ``with_lrs`` copies)."""
    return self.runner.methods_reused

  @methods_reused.setter
  def methods_reused(self, n: int) -> None:
    self.runner.methods_reused = n

  @property
  def feature_cache(self) -> T.FeatureCache:
    return self.runner.feature_cache

  # -- inference with given params ------------------------------------------------
  def label_scale(self, split: str = "train") -> tuple[float, float]:
    return self.specs.label_scale(split)

  def predict(self, model: nnx.Module, only_val: bool = False) -> dict[str, np.ndarray]:
    """Predictions of ``model`` as it stands, on every eval split (or on the ID
    validation split alone, for model selection)."""
    splits = {"val": self.splits.val} if only_val else self.splits
    return T.predict(model, self.task, splits, self.config.eval_batch_size,
                     self.label_scale(), int(self.config.eval_batch_tokens))


def _prepare_once(splits: ShiftSplits, prepare, cfg):
  """``view -> prepared view`` for ``splits.map_large`` that runs ``prepare``
  once on every distinct text of all splits (auxiliary tasks repeat the ID
  training sentences, OOD groups overlap) and reads each split's rows off it."""
  texts: list[np.ndarray] = []
  splits.map_large(lambda view: texts.append(np.asarray(view["text"])) or view)
  uniq = np.unique(np.concatenate(texts)) if texts else np.asarray([], object)
  prepared = prepare(uniq, cfg)
  return lambda view: {k: v[np.searchsorted(uniq, np.asarray(view["text"]))]
                       for k, v in prepared.items()}
