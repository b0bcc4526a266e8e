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
from benchmark.kinds import KINDS


def grid(ctx: Context, kind: str) -> list[float]:
  """The learning-rate grid that tunes ``kind`` (``ComponentKind.grid``)."""
  key = KINDS.get(kind).grid
  return parse_grid(ctx.config.protocol[key], key)


def tuned_kinds(ctx: Context, methods: Sequence, seed: int) -> list[str]:
  """Component kinds whose lr the protocol chooses for these methods,
  dependencies first (LP before LP->FT). A kind that trains at another
  kind's choice (``lr_of``: not tuned itself) brings that kind in."""
  kinds: list[str] = []
  for m in methods:
    for spec in m.specs(ctx, seed).values():
      for s in spec.all_specs():
        k = KINDS.get(s.kind)
        name = k.name if k.tuned else k.lr_of
        if name and name not in kinds and KINDS.get(name).tuned:
          kinds.append(name)
  return kinds


@dataclasses.dataclass
class Choice:
  kind: str
  lr: float
  val: float | None                  # the chosen value's ID validation score
  candidates: list[dict]             # {"lr", "val", "status", "key"} per grid value

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def chosen_lrs(choices: dict[str, Choice]) -> dict[str, float]:
  return {k: c.lr for k, c in choices.items()}


def select(ctx: Context, methods: Sequence, seed: int,
           shard: tuple[int, int] = (0, 1)) -> dict[str, Choice]:
  """Trains each tuned kind's grid at ``seed`` (what the store lacks) and
  returns, per kind, the value with the best ID validation score; nothing on
  ``ctx`` changes (``ctx.with_lrs(chosen_lrs(choices))`` uses them). Later
  kinds are built with earlier choices (LP->FT from the chosen LP). With
  ``shard=(i, n)`` this process trains every n-th grid point first, then
  waits for the others' (claims)."""
  choices: dict[str, Choice] = {}
  i, n = shard
  for kind in tuned_kinds(ctx, methods, seed):
    values = grid(ctx, kind)
    if not values:
      continue
    cur = ctx.with_lrs(chosen_lrs(choices))
    specs = [cur.spec_with_lr(kind, seed, v) for v in values]
    for j, spec in enumerate(specs):  # this shard's share first
      if j % n == i:
        _try(cur, spec)
    cands = []
    for v, spec in zip(values, specs):
      res = _try(cur, spec)
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
    choices[kind] = Choice(kind, best["lr"], best["val"], cands)
    ctx.progress(f"selected lr {best['lr']:g} for {kind} (ID val {best['val']:.4f})")
  return choices


def lr_to_choose(ctx: Context, kind: str) -> bool:
  """Whether ``kind``'s learning rate is still to be chosen by a grid (the
  protocol's choice not made yet): a dry run then shows a stand-in value."""
  k = KINDS.get(kind)
  name = k.name if k.tuned else k.lr_of
  return bool(name) and KINDS.get(name).tuned and bool(grid(ctx, name)) and name not in ctx.lrs


def stored_choice(ctx: Context, values: Sequence[float],
                  specs: Sequence[ComponentSpec]) -> float | None:
  """The value ``select`` would choose from the grid's stored records (best ID
  validation score, the first on ties), or None while one is missing."""
  best = None
  for v, spec in zip(values, specs):
    rec = ctx.store.read(ctx.store.component_path(spec.kind, spec.key))
    if rec is None:
      return None
    val = rec.get("scores", {}).get("val") if rec.get("status") == "ok" else None
    if val is not None and (best is None or metrics.better(ctx.task, val, best[1])):
      best = (v, val)
  return None if best is None else best[0]


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

  cur = ctx
  for kind in tuned_kinds(ctx, methods, seeds[0]):
    values = grid(ctx, kind)
    specs = [cur.spec_with_lr(kind, seeds[0], v) for v in values]
    for spec in specs:
      add(spec, "grid")
    if values and kind not in cur.lrs:
      # The choice select() makes, if every grid point is stored (a rerun
      # then lists nothing); else the first value stands in for it.
      cur = cur.with_lrs({kind: stored_choice(cur, values, specs) or values[0]})
  for m in methods:
    for seed in seeds:
      for spec in m.specs(cur, seed).values():
        add(spec, "seeds")
  return out
