"""Fine-tuning generalization baselines (paper Table 1, middle block)."""
from __future__ import annotations

import numpy as np
from flax import nnx

from benchmark import metrics
from benchmark.data import REGRESSION
from benchmark.models import params as P
from benchmark.models.task import LargeWithHead
from methods.base import Method, MethodOutput, OutputEnsemble, SingleComponent, register


@register
class LPFT(SingleComponent):
  """Kumar et al. 2022b: linear probe, then fine-tune everything from there."""
  name, kind, family = "lp_ft", "lp_ft", "generalization"
  label = "LP→FT"


def _temperature(logp: np.ndarray, label: np.ndarray) -> float:
  """Temperature minimising validation NLL, on a log grid."""
  grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
  def nll(t):
    z = logp / t
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(label)), label]))
  return float(min(grid, key=nll))


def _affine(pred: np.ndarray, label: np.ndarray) -> tuple[float, float]:
  """Least-squares recalibration label ~ a * pred + b on validation."""
  a, b = np.polyfit(pred.astype(np.float64), label.astype(np.float64), 1)
  return float(a), float(b)


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
    calibrated, info = {}, {}
    for m in ("ft", "lp"):
      p = comps[m].preds
      if ctx.task == REGRESSION:
        a, b = _affine(p["val"], val)
        calibrated[m] = {s: a * v + b for s, v in p.items()}
        info[m] = {"a": a, "b": b}
      else:
        t = _temperature(p["val"], val)
        calibrated[m] = {s: _log_softmax(v / t) for s, v in p.items()}
        info[m] = {"temperature": t}
    return MethodOutput({s: metrics.ensemble(ctx.task, [calibrated["ft"][s], calibrated["lp"][s]])
                         for s in calibrated["ft"]}, {"calibration": info})


def _log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


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
    best = None  # chosen on ID validation only; then one pass over every split
    for a in ctx.config.wise_alphas:
      P.load_params(model, mix(a), strict=True)
      v = metrics.score(ctx.task, ctx.predict(model, only_val=True)["val"], val)
      if best is None or metrics.better(ctx.task, v, best[0]):
        best = (v, a)
    P.load_params(model, mix(best[1]), strict=True)
    return MethodOutput(ctx.predict(model), {"alpha": best[1], "val": best[0]})
