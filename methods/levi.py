"""LEVI (paper Sec. 4) with the three large-model settings of Table 14."""
from methods.base import SingleComponent, register


@register
class Levi(SingleComponent):
  """The paper's main setting: large model light-tuned (top half of blocks)."""
  name, kind, family = "levi", "levi_light", "levi"
  label = "LEVI"


@register
class LeviPretrained(SingleComponent):
  name, kind, family = "levi_pretrained", "levi_frozen", "levi"
  label = "LEVI with pre-trained large model"


@register
class LeviFinetuned(SingleComponent):
  name, kind, family = "levi_finetuned", "levi_full", "levi"
  label = "LEVI with fully fine-tuned large model"


@register
class LeviLoRA(SingleComponent):
  """LEVI whose large model is LoRA-tuned with it (Sec. 5.3, Table 4)."""
  name, kind, family = "levi_lora", "levi_lora", "lora"
  label = "LEVI with LoRA-tuned large model"
  needs_lora = True
