"""One base class for methods (DomainBed style) and their registry.

A method is a recipe over trained components: ``specs`` names the components
it needs (without training anything, so sweeps can be listed, sharded and
skipped), and ``combine`` turns their stored predictions or weights into the
method's predictions on every eval split.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from benchmark.components import ComponentResult, ComponentSpec, Context
from benchmark.registry import Registry


@dataclasses.dataclass
class MethodOutput:
  preds: dict[str, np.ndarray]              # per eval split ("val", "test_id", "ood/<g>")
  info: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. selected alpha


class Method:
  name: str = ""
  label: str = ""        # row label in tables, as in the paper
  family: str = ""       # table section
  # Components whose networks run at inference (Table 3); None: every
  # component ``specs`` names (not their dependencies).
  inference_members: tuple[str, ...] | None = None
  # Needs a backbone with LoRA targets (``Backbone.lora_targets``); ``--method
  # all`` leaves such methods out on other backbones.
  needs_lora: bool = False
  # Needs auxiliary tasks (``ShiftSplits.aux``, Model Ratatouille); ``--method
  # all`` leaves such methods out on datasets that declare none.
  needs_aux: bool = False
  # Not a row of the paper: shown below the paper's rows of its comparison
  # tables, marked (like the weight-averaging rows); ``--noextra_rows`` drops it.
  extra_row: bool = False

  def specs(self, ctx: Context, seed: int) -> dict[str, ComponentSpec]:
    raise NotImplementedError

  def combine(self, ctx: Context, seed: int,
              comps: dict[str, ComponentResult]) -> MethodOutput:
    raise NotImplementedError

  def config(self, ctx: Context) -> dict[str, Any]:
    """Method-level hyperparameters that are not part of any component."""
    return {}

  def why_not(self, ctx: Context) -> str | None:
    """Why this method does not apply to ``ctx``'s dataset and backbone (one
    phrase, e.g. for an ``n/a`` cell), or None when it does. ``--method all``
    leaves out the methods that do not apply."""
    if self.needs_lora and ctx.backbone.lora_targets is None:
      return f"{ctx.backbone.name} has no attention projections for LoRA"
    if self.needs_aux and not ctx.splits.aux:
      return f"{ctx.info.name} declares no auxiliary tasks"
    return None


METHODS: Registry[Method] = Registry("method")


def register(cls):
  METHODS.add(cls.name, cls())
  return cls


class SingleComponent(Method):
  """A method that is one trained component, e.g. FT or LEVI."""
  kind: str = ""

  def specs(self, ctx, seed):
    return {self.kind: ctx.spec(self.kind, seed)}

  def combine(self, ctx, seed, comps):
    return MethodOutput(dict(comps[self.kind].preds))


class OutputEnsemble(Method):
  """Average of several components' outputs (probabilities for classification)."""
  members: tuple[str, ...] = ()

  def combine(self, ctx, seed, comps):
    from benchmark.metrics import ensemble
    names = list(comps[self.members[0]].preds)
    return MethodOutput({s: ensemble(ctx.task, [comps[m].preds[s] for m in self.members])
                         for s in names})


class ChosenOnVal(Method):
  """A method whose candidates are components trained with different
  settings (``specs``: name -> spec); ``combine`` keeps the one with the best
  ID-validation score (the first on ties), per seed. ``setting(spec)`` names
  what was chosen, for the record."""
  one_network = True   # Table 3: the chosen candidate's network runs at inference

  def setting(self, spec: ComponentSpec) -> Any:
    return None

  def combine(self, ctx, seed, comps):
    from methods.rules import choose_on_val
    best, _ = choose_on_val(ctx.task, list(comps), lambda n: comps[n].record["scores"]["val"])
    return MethodOutput(dict(comps[best].preds), {
        "chosen": best, "setting": self.setting(comps[best].spec),
        "val": {n: c.record["scores"]["val"] for n, c in comps.items()}})
