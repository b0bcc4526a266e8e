"""Store keys of every component kind and every method, pinned: a refactor
of spec building that changed a key would silently retrain (or orphan)
every stored record. ``tests/golden/spec_keys.json`` was written by
``keys()`` below (``python -m tools.regen_golden --only spec_keys``);
regenerate it only for a deliberate change of what a component is, and say
so in the commit."""
from __future__ import annotations

import json
from pathlib import Path

from benchmark import protocol
from methods import METHODS
from tests.harness import smoke_context

GOLDEN = Path(__file__).parent / "golden" / "spec_keys.json"
KINDS = ("ft", "ht", "lp", "fs", "lp_ft", "lora", "small", "small_multi", "levi_frozen",
         "levi_light", "levi_full", "levi_lora", "a3")
# Methods added after the keys were pinned: not in the golden file.
NEWER = ("l2sp", "surgical", "levi_batchensemble")


def keys(workdir) -> dict:
  out = {}
  for ds in ("synthetic_spurious", "movielens_genre"):
    ctx = smoke_context(workdir, ds)
    lora = ctx.backbone.lora_targets is not None
    d = {k: ctx.spec(k, 1).key for k in KINDS if lora or "lora" not in k}
    if ctx.pretrain_spec() is not None:
      d["pretrain"] = ctx.pretrain_spec().key
    d["layer_probe"] = ctx.layer_probe_spec(1, 2).key
    aux = ctx.aux_names()[0]
    d["aux_ft"] = ctx.aux_spec("aux_ft", aux, 0).key
    d["lp_ft_aux"] = ctx.aux_spec("lp_ft_aux", aux, 0).key
    d["ft@0.01"] = ctx.spec_with_lr("ft", 0, 0.01).key
    for name in METHODS:
      m = METHODS.get(name)
      if (m.needs_lora and not lora) or name in NEWER:
        continue
      d["method:" + name] = protocol.method_key(ctx, m, 0)[0]
    out[ds] = d
  return out


def test_component_and_method_keys_are_unchanged(tmp_path):
  assert keys(tmp_path) == json.loads(GOLDEN.read_text())
