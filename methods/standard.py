"""Standard training baselines (paper Table 1, top block)."""
from methods.base import SingleComponent, register


@register
class FineTuning(SingleComponent):
  name, kind, family = "ft", "ft", "standard"
  label = "Fine-tuning (FT)"


@register
class HalfTuning(SingleComponent):
  name, kind, family = "ht", "ht", "standard"
  label = "Light-tuning: half of blocks (HT)"


@register
class LinearProbing(SingleComponent):
  name, kind, family = "lp", "lp", "standard"
  label = "Light-tuning: linear probing (LP)"


@register
class FromScratch(SingleComponent):
  name, kind, family = "fs", "fs", "standard"
  label = "From scratch (FS)"


@register
class LoRA(SingleComponent):
  """Hu et al. 2022: the large model frozen but for rank-r updates of its
  attention projections, plus the head (paper Sec. 5.3, Table 4)."""
  name, kind, family = "lora", "lora", "lora"
  label = "LoRA-tuned large model"
  needs_lora = True
