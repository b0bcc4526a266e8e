"""ViT weights in the big_vision / AugReg ``.npz`` layout, written from a
model built here (no download), for the ViT loader's tests."""
from __future__ import annotations

import numpy as np

from benchmark.models import params as P
from benchmark.models.vit import ViT


def augreg_from_ours(model: ViT) -> dict[str, np.ndarray]:
  """Our parameters under AugReg's names (the inverse of the loader)."""
  flat, heads = P.flat_params(model), model.cfg.num_heads
  blk = {"norm1": "LayerNorm_0", "norm2": "LayerNorm_2", "attn": "MultiHeadDotProductAttention_1",
         "mlp/fc1": "MlpBlock_3/Dense_0", "mlp/fc2": "MlpBlock_3/Dense_1"}
  top = {"patch_embed": "embedding", "cls": "cls", "norm": "Transformer/encoder_norm",
         "pos_embedding": "Transformer/posembed_input/pos_embedding"}
  out = {}
  for k, v in flat.items():
    if k.startswith("blocks/"):
      _, i, rest = k.split("/", 2)
      for a, b in blk.items():
        rest = rest.replace(a, b, 1) if rest.startswith(a + "/") else rest
      name = f"Transformer/encoderblock_{i}/{rest}"
      if "/query/" in k or "/key/" in k or "/value/" in k:
        v = v.reshape(*v.shape[:-1], heads, -1)
      elif k.endswith("attn/out/kernel"):
        v = v.reshape(heads, -1, v.shape[-1])
    else:
      head, _, leaf = k.rpartition("/")
      name = f"{top[head]}/{leaf}" if head else top[leaf]
    out[name] = v
  return out
