"""L2-SP (Li et al., ICML 2018, "Explicit inductive bias for transfer
learning"): fine-tuning with an L2 penalty towards the pre-trained weights.

Not a row of the LEVI paper. The component kind ``l2sp`` is FT with the
original paper's regulariser added to the loss,
``alpha/2 * ||w_large - w_pretrained||^2 + beta/2 * ||w_head||^2``, trained at
FT's learning rate (FT's choice under the ``paper`` preset). The method
trains one such component per ``alpha`` of ``config.l2sp.alphas`` and keeps
the one with the best ID-validation score (per seed); ``beta`` is fixed
(``config.l2sp.beta``, Li et al.'s 0.01).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from benchmark.builtin_kinds import TRAIN_ALL, head_network
from benchmark.configs import parse_grid
from benchmark.errors import UserError
from benchmark.kinds import ComponentKind, register_kind
from methods.base import ChosenOnVal, register


@dataclasses.dataclass(frozen=True)
class L2ToStart:
  """``alpha/2 * ||w - w0||^2`` over the parameters under ``prefix`` (the
  pre-trained large model) plus ``beta/2 * ||w||^2`` over the others (the new
  head, which has no pre-trained value)."""
  alpha: float
  beta: float
  prefix: str = "large/"

  def __call__(self, params, start):
    to_start = [jnp.sum(jnp.square(params[k] - start[k])) for k in sorted(params)
                if k.startswith(self.prefix)]
    decay = [jnp.sum(jnp.square(params[k])) for k in sorted(params)
             if not k.startswith(self.prefix)]
    return 0.5 * self.alpha * sum(to_start) + 0.5 * self.beta * sum(decay)


def _config(specs, seed, alpha=None, **_):
  alpha = alphas(specs.config)[0] if alpha is None else float(alpha)
  return {**specs.common("l2sp"), "large": specs.large_cfg(),
          "l2sp": {"alpha": alpha, "beta": float(specs.config.l2sp.beta)}}


register_kind(ComponentKind(
    "l2sp", "FT with an L2 penalty towards the pre-trained weights (Li et al. 2018)",
    _config, head_network(lambda nets, large: TRAIN_ALL), lr_key="ft", default_lr=1e-3,
    lr_of="ft", tuned=False,
    loss_term=lambda config: L2ToStart(config["l2sp"]["alpha"], config["l2sp"]["beta"]),
    config_defaults={"l2sp": {"alphas": "0.001,0.01,0.1,1", "beta": 0.01}}))


def alphas(config) -> list[float]:
  text = str(config.l2sp.alphas)
  try:
    values = parse_grid(text, "lr_grid")
  except UserError:
    values = []
  if not values:
    raise UserError(f"config l2sp.alphas={text!r}: give comma-separated positive penalty "
                    f"strengths, e.g. --config.l2sp.alphas=0.01,0.1")
  return values


@register
class L2SP(ChosenOnVal):
  """FT regularised towards the pre-trained weights; alpha chosen on ID val."""
  name, family = "l2sp", "beyond"
  label = "L2-SP (Li et al. 2018)"
  extra_row = True

  def specs(self, ctx, seed):
    return {f"alpha={a:g}": ctx.spec("l2sp", seed, alpha=a) for a in alphas(ctx.config)}

  def config(self, ctx):
    return {"alphas": alphas(ctx.config)}

  def setting(self, spec):
    return {"alpha": spec.config["l2sp"]["alpha"]}
