"""Ablations A1-A5 (paper Sec. 5.4, App. D.4, Table 5)."""
from methods.base import OutputEnsemble, SingleComponent, register


@register
class A1(OutputEnsemble):
  """Prediction ensemble of two fine-tuned large models (FT and FT with
  another seed)."""
  name, family = "a1", "ablation"
  label = "A1) Large+Large"
  members = ("ft", "ft_second")

  def specs(self, ctx, seed):
    return {"ft": ctx.spec("ft", seed),
            "ft_second": ctx.spec("ft", seed + int(ctx.config.a1_seed_offset))}


@register
class A2(OutputEnsemble):
  """Prediction ensemble of a fine-tuned large model and the small model."""
  name, family = "a2", "ablation"
  label = "A2) Large+MLP"
  members = ("ft", "small")

  def specs(self, ctx, seed):
    return {"ft": ctx.spec("ft", seed), "small": ctx.spec("small", seed)}


@register
class A3(SingleComponent):
  """Adapting layers on the large model's taps alone (no small model)."""
  name, kind, family = "a3", "a3", "ablation"
  label = "A3) Large intermediates"


@register
class A4(SingleComponent):
  """The small model alone, one head."""
  name, kind, family = "a4", "small", "ablation"
  label = "A4) Single-head MLP"


@register
class A5(SingleComponent):
  """The small model as a shared bottom with several heads, averaged."""
  name, kind, family = "a5", "small_multi", "ablation"
  label = "A5) Multi-head MLP"
