"""Fine-tuning generalization baselines (paper Table 1, middle block)."""
from __future__ import annotations

import numpy as np
from flax import nnx

from benchmark import metrics
from benchmark.models import params as P
from benchmark.models.task import LargeWithHead
from methods import rules
from methods.base import Method, MethodOutput, OutputEnsemble, SingleComponent, register


@register
class LPFT(SingleComponent):
  """Kumar et al. 2022b: linear probe, then fine-tune everything from there."""
  name, kind, family = "lp_ft", "lp_ft", "generalization"
  label = "LP→FT"


@register
class FTRobust(Method):
  """Kumar et al. 2022a, calibrated ensembles: FT and the robust model (LP),
  each calibrated on ID validation, then averaged. Classification: temperature
  scaling; regression: affine recalibration (docs/fidelity.md)."""
  name, family = "ft_robust", "generalization"
  label = "FT+RobustModel"

  def specs(self, ctx, seed):
    return {"ft": ctx.spec("ft", seed), "lp": ctx.spec("lp", seed)}

  def combine(self, ctx, seed, comps):
    val = np.asarray(ctx.splits.val.label)
    preds, info = rules.calibrated_ensemble(
        ctx.task, {m: comps[m].preds for m in ("ft", "lp")}, val)
    return MethodOutput(preds, {"calibration": info})


@register
class FTFromScratch(OutputEnsemble):
  name, family = "ft_fs", "generalization"
  label = "FT+FS"
  members = ("ft", "fs")

  def specs(self, ctx, seed):
    return {"ft": ctx.spec("ft", seed), "fs": ctx.spec("fs", seed)}


@register
class FTZeroShot(Method):
  """WiSE-FT (Wortsman et al. 2022b): weights (1-a) * zero-shot + a * FT, with
  a chosen on ID validation. The zero-shot endpoint is the pre-trained large
  model with the linear-probe head, as WiSE-FT does for models without a
  zero-shot head (docs/fidelity.md)."""
  name, family = "ft_zeroshot", "generalization"
  label = "FT+ZeroShot"
  inference_members = ("ft",)  # one network with the mixed weights

  def specs(self, ctx, seed):
    return {"ft": ctx.spec("ft", seed), "lp": ctx.spec("lp", seed)}

  def config(self, ctx):
    return {"alphas": list(ctx.config.wise_alphas)}

  def combine(self, ctx, seed, comps):
    model = LargeWithHead(ctx.build_large(nnx.Rngs(seed)), ctx.info.out_dim, rngs=nnx.Rngs(seed))
    ctx.load_pretrained(model)
    P.load_params(model, {k: v for k, v in comps["lp"].params.items() if k.startswith("head/")},
                  source="LP head", strict=True)
    zero = P.flat_params(model)
    ft = {k: v for k, v in comps["ft"].params.items() if not k.startswith("state:")}
    if set(ft) != set(zero):
      raise ValueError("WiSE-FT needs FT and zero-shot weights of one architecture")
    val = np.asarray(ctx.splits.val.label)
    mix = lambda a: {k: (1 - a) * zero[k] + a * ft[k] for k in zero}
    def val_score(a):  # chosen on ID validation only; then one pass over every split
      P.load_params(model, mix(a), strict=True)
      return metrics.score(ctx.task, ctx.predict(model, only_val=True)["val"], val)
    best = rules.choose_on_val(ctx.task, list(ctx.config.wise_alphas), val_score)
    P.load_params(model, mix(best[0]), strict=True)
    return MethodOutput(ctx.predict(model), {"alpha": best[0], "val": best[1]})
