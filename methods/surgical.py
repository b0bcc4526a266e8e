"""Surgical fine-tuning (Lee et al., ICLR 2023): train a single block of the
large model (and the new head), the block chosen on ID validation.

Not a row of the LEVI paper. The component kind ``surgical`` trains block
``j`` of the pre-trained large model (its ``block_patterns()[j]``) and the
linear head; every other parameter stays frozen. It trains at FT's learning
rate (FT's choice under the ``paper`` preset). The method trains one such
component per block of ``config.surgical.blocks`` ("all", or indices) and
keeps the one with the best ID-validation score, per seed, as Lee et al.
choose the block on held-out ID data.
"""
from __future__ import annotations

from benchmark.builtin_kinds import head_network
from benchmark.errors import UserError
from benchmark.kinds import FULL, ComponentKind, register_kind
from methods.base import ChosenOnVal, register


def blocks(specs) -> list[int]:
  n = specs.num_blocks()
  text = str(specs.config.surgical.blocks).strip()
  if text == "all":
    return list(range(n))
  try:
    chosen = [int(x) for x in text.split(",")]
  except ValueError:
    chosen = []
  if not chosen or any(not 0 <= b < n for b in chosen):
    raise UserError(f"config surgical.blocks={text!r}: give 'all' or block indices in "
                    f"0..{n - 1} of {specs.backbone.name}, e.g. --config.surgical.blocks=0,{n - 1}")
  return list(dict.fromkeys(chosen))


def _config(specs, seed, block=None, **_):
  block = blocks(specs)[0] if block is None else int(block)
  return {**specs.common("surgical"), "large": specs.large_cfg(), "block": block}


def _rules(config):
  def rules(nets, large):
    pattern = large.block_patterns()[config["block"]]
    return [(r"^head/", True), (rf"^large/{pattern}", True), (r"^large/", False)]
  return rules


register_kind(ComponentKind(
    "surgical", "one block of the large model and the head (Lee et al. 2023)", _config,
    lambda nets, config, rngs: head_network(_rules(config))(nets, config, rngs),
    lr_key="ft", default_lr=1e-3, lr_of="ft", tuned=False, large=FULL,
    config_defaults={"surgical": {"blocks": "all"}}))


@register
class Surgical(ChosenOnVal):
  """A single block of the large model tuned; the block chosen on ID val."""
  name, family = "surgical", "beyond"
  label = "Surgical FT (Lee et al. 2023)"
  extra_row = True

  def specs(self, ctx, seed):
    return {f"block{b}": ctx.spec("surgical", seed, block=b) for b in blocks(ctx.specs)}

  def config(self, ctx):
    return {"blocks": blocks(ctx.specs)}

  def setting(self, spec):
    return {"block": spec.config["block"]}
