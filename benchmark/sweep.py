"""The paper's protocol (App. D.3): every component kind's learning rate is
chosen from a grid on the ID validation split, at the first seed; then every
seed runs at the chosen value.

Selection is per component kind (FT, HT, LP, FS, LP->FT, the small model,
each LEVI variant), so a method built from several components (FT+FS,
FT+RobustModel, A1, A2, ...) uses the value each of its members was chosen
with on its own, and a component is never trained twice for two methods.
Only the ``val`` split's score is looked at: test_id and OOD scores never take
part in a choice. Method-level settings (WiSE-FT's mixing coefficient, the
calibration of FT+RobustModel) are chosen on ID validation inside the methods.

Grids come from ``config.protocol``: ``lr_grid`` for every kind but linear
probing, ``lr_grid_lp`` for LP; an empty grid keeps the config's ``lr.*``
value (the ``smoke`` and ``cpu`` presets, where a grid would multiply the
cost by four or five). The ``paper`` preset sets the paper's grids.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from benchmark import metrics
from benchmark.components import ComponentFailed, ComponentSpec, Context
from benchmark.configs import parse_grid

# Trained with their config's lr, not a choice on the target's ID validation:
# pre-training; an auxiliary fine-tuning (``ratatouille.aux_lr``); LP->FT from
# an auxiliary fine-tuning (LP->FT's chosen lr, as the plain-start ingredient).
NOT_TUNED = ("pretrain", "aux_ft", "lp_ft_aux")


def grid(ctx: Context, kind: str) -> list[float]:
  p = ctx.config.protocol
  return (parse_grid(p.lr_grid_lp, "lr_grid_lp") if kind == "lp"
          else parse_grid(p.lr_grid, "lr_grid"))


def tuned_kinds(ctx: Context, methods: Sequence, seed: int) -> list[str]:
  """Component kinds the methods need, dependencies first (LP before LP->FT)."""
  kinds: list[str] = []
  for m in methods:
    for spec in m.specs(ctx, seed).values():
      for s in spec.all_specs():
        if s.kind not in kinds and s.kind not in NOT_TUNED:
          kinds.append(s.kind)
  return kinds


@dataclasses.dataclass
class Choice:
  kind: str
  lr: float
  val: float | None                  # the chosen value's ID validation score
  candidates: list[dict]             # {"lr", "val", "status", "key"} per grid value

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def select(ctx: Context, methods: Sequence, seed: int,
           shard: tuple[int, int] = (0, 1)) -> dict[str, Choice]:
  """Trains each tuned kind's grid at ``seed`` (what the store lacks), picks
  the value with the best ID validation score and sets it on ``ctx`` (so
  every later ``ctx.spec`` uses it). With ``shard=(i, n)`` this process trains
  every n-th grid point first, then waits for the others' (claims)."""
  choices: dict[str, Choice] = {}
  i, n = shard
  for kind in tuned_kinds(ctx, methods, seed):
    values = grid(ctx, kind)
    if not values:
      continue
    specs = [ctx.spec_with_lr(kind, seed, v) for v in values]
    for j, spec in enumerate(specs):  # this shard's share first
      if j % n == i:
        _try(ctx, spec)
    cands = []
    for v, spec in zip(values, specs):
      res = _try(ctx, spec)
      cands.append({"lr": v, "key": spec.key,
                    "status": "failed" if res is None else "ok",
                    "val": None if res is None else float(res.record["scores"]["val"])})
    ok = [c for c in cands if c["val"] is not None]
    if not ok:
      raise ComponentFailed(f"every learning rate of {kind}'s grid {values} failed")
    best = ok[0]
    for c in ok[1:]:
      if metrics.better(ctx.task, c["val"], best["val"]):
        best = c
    ctx.lr_override[kind] = best["lr"]
    choices[kind] = Choice(kind, best["lr"], best["val"], cands)
    ctx.progress(f"selected lr {best['lr']:g} for {kind} (ID val {best['val']:.4f})")
  return choices


def _try(ctx: Context, spec: ComponentSpec):
  try:
    return ctx.component(spec)
  except ComponentFailed:
    return None


def pending(ctx: Context, methods: Sequence, seeds: Sequence[int]) -> list[tuple[ComponentSpec, str]]:
  """The component trainings a sweep still needs, without training anything:
  ``(spec, why)`` with why "grid" (a grid point at the first seed) or "seeds"
  (a run at the configured lr, or, for tuned kinds whose choice is not made
  yet, at the grid's first value standing in for the chosen one)."""
  out: list[tuple[ComponentSpec, str]] = []
  seen: set[str] = set()

  def add(spec: ComponentSpec, why: str) -> None:
    for s in spec.all_specs():
      if s.key not in seen and not ctx.store.component_path(s.kind, s.key).exists():
        seen.add(s.key)
        out.append((s, why))

  unchosen = []
  for kind in tuned_kinds(ctx, methods, seeds[0]):
    values = grid(ctx, kind)
    for v in values:
      add(ctx.spec_with_lr(kind, seeds[0], v), "grid")
    if values and kind not in ctx.lr_override:
      unchosen.append(kind)
      ctx.lr_override[kind] = values[0]  # stands in for the choice to come
  try:
    for m in methods:
      for seed in seeds:
        for spec in m.specs(ctx, seed).values():
          add(spec, "seeds")
  finally:
    for kind in unchosen:
      del ctx.lr_override[kind]
  return out
