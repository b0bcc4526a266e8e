"""The App. D.3 protocol: learning rates chosen per component kind on ID
validation at the first seed, then every seed at the chosen value."""
from __future__ import annotations

import pytest

from benchmark import sweep
from benchmark.errors import UserError
from methods import METHODS
from tests.harness import smoke_context

GRID = {"protocol.lr_grid": "1e-3,3e-2", "protocol.lr_grid_lp": "1e-2,1e-1", "epochs": 2}


def test_choice_is_the_best_val_score_and_every_seed_uses_it(tmp_path):
  ctx = smoke_context(tmp_path, **GRID)
  methods = [METHODS.get(n) for n in ("ft", "lp_ft", "ft_fs")]
  assert sweep.tuned_kinds(ctx, methods, 0) == ["ft", "lp", "lp_ft", "fs"]
  todo = sweep.pending(ctx, methods, [0, 1])
  # pretrain once; per kind 2 grid points at seed 0 and 1 more seed.
  assert len(todo) == 1 + 4 * (2 + 1), [(s.kind, s.config.get("lr"), s.seed) for s, _ in todo]

  choices = sweep.select(ctx, methods, 0)
  assert set(choices) == {"ft", "lp", "lp_ft", "fs"}
  # The choice is a value: ``ctx`` is unchanged, a context built with it uses it.
  assert ctx.lrs == {} and ctx.spec("ft", 1).config["lr"] == ctx.config.lr.ft
  ctx = ctx.with_lrs(sweep.chosen_lrs(choices))
  for kind, ch in choices.items():
    vals = [c["val"] for c in ch.candidates]
    assert len(vals) == 2 and all(v is not None for v in vals)
    best = min(vals) if ctx.task == "regression" else max(vals)
    assert ch.val == best and ch.lr == ch.candidates[vals.index(best)]["lr"]
    assert ctx.spec(kind, 1).config["lr"] == ch.lr
  # LP->FT starts from the LP head chosen for LP.
  assert ctx.spec("lp_ft", 1).dep("lp").config["lr"] == choices["lp"].lr
  # Seed 0 at the chosen value is the grid point already trained.
  assert sweep.pending(ctx, methods, [0]) == []
  assert len(sweep.pending(ctx, methods, [0, 1])) == 4


def test_no_grid_keeps_the_config_lr(tmp_path):
  ctx = smoke_context(tmp_path)
  assert sweep.select(ctx, [METHODS.get("ft")], 0) == {}
  assert ctx.spec("ft", 0).config["lr"] == ctx.config.lr.ft


@pytest.mark.parametrize("bad", ["0.1,x", "-1e-3", "nan"])
def test_malformed_grid_is_a_user_error(tmp_path, bad):
  with pytest.raises(UserError, match="protocol.lr_grid"):
    smoke_context(tmp_path, **{"protocol.lr_grid": bad})
