"""Vision Transformer (Dosovitskiy et al. 2021) exposing every block: the
paper's ImageNet-21k ViT-B/16, and ViT-Ti/16 for CPU runs.

Pre-LayerNorm blocks as in big_vision and Hugging Face's ``ViTModel``: a
16x16 patch convolution, a class token, learned position embeddings, then
blocks of LayerNorm -> multi-head attention -> residual, LayerNorm -> MLP
(exact erf GELU) -> residual, then a final LayerNorm. Taps: the class token
of every block's output; the last one after the final LayerNorm (the feature
ViT's classification head reads). Checkpoints: big_vision / AugReg ``.npz``
and Hugging Face ``model.safetensors``, read with numpy (no TF, no torch).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import ops
from benchmark.models import params as P
from benchmark.models.backbone import (BACKBONES, Backbone, _file_digest, _safetensors,
                                       weights_digest)
from benchmark.models.bert import matmul_dtype
from benchmark.models.small import image_to_float


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """A ViT's shape; ``image_size`` is the (square) input the model is built for."""
  image_size: int = 224
  patch_size: int = 16
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  layer_norm_eps: float = 1e-6     # big_vision; Hugging Face configs say 1e-12
  compute_dtype: str = "float32"   # or "bfloat16" matmuls with float32 accumulation

  @classmethod
  def b16(cls) -> "ViTConfig":
    return cls()

  @classmethod
  def ti16(cls) -> "ViTConfig":
    return cls(hidden_size=192, num_layers=12, num_heads=3, mlp_dim=768)

  @classmethod
  def from_hf_json(cls, path: str | os.PathLike) -> "ViTConfig":
    """A Hugging Face ViT ``config.json`` (the file, or its folder)."""
    p, raw = P.read_config_json(path, "ViT")
    if raw.get("model_type", "vit") != "vit":
      raise UserError(f"{p}: model_type={raw['model_type']!r}, not 'vit'; pass a "
                      f"Hugging Face ViT (ViTModel) checkpoint")
    if not raw.get("qkv_bias", True):
      raise UserError(f"{p}: qkv_bias=false; ViT's query/key/value have biases: pass "
                      f"a standard ViT checkpoint")
    if int(raw.get("num_channels", 3)) != 3:
      raise UserError(f"{p}: num_channels={raw['num_channels']}; the harness feeds RGB "
                      f"images: pass a 3-channel ViT checkpoint")
    if raw.get("hidden_act", "gelu") != "gelu":
      raise UserError(f"{p}: hidden_act={raw['hidden_act']!r}; only ViT's erf GELU "
                      f"('gelu') is implemented")
    try:
      return cls(image_size=int(raw.get("image_size", 224)),
                 patch_size=int(raw.get("patch_size", 16)),
                 hidden_size=int(raw["hidden_size"]),
                 num_layers=int(raw["num_hidden_layers"]),
                 num_heads=int(raw["num_attention_heads"]),
                 mlp_dim=int(raw["intermediate_size"]),
                 layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)))
    except KeyError as e:
      raise UserError(f"{p}: no {e.args[0]!r}; not a ViT config.json") from None

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size


def _norm(cfg: ViTConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Two-pass variance, as torch and big_vision compute it.
  return nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps,
                       use_fast_variance=False, rngs=rngs)


def _dense(n_in: int, n_out: int, cfg: ViTConfig, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(n_in, n_out, kernel_init=nnx.initializers.xavier_uniform(),
                    bias_init=nnx.initializers.normal(1e-6), rngs=rngs,
                    **matmul_dtype(cfg.compute_dtype))


class Attention(nnx.Module):
  """Multi-head self-attention; ``query``/``key``/``value``/``out`` are plain
  linear layers (the targets of LoRA)."""

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
    if cfg.hidden_size % cfg.num_heads:
      raise UserError(f"ViT hidden_size {cfg.hidden_size} is not a multiple of "
                      f"num_heads {cfg.num_heads}; fix the config")
    h = cfg.hidden_size
    self.num_heads = cfg.num_heads
    self.query = _dense(h, h, cfg, rngs)
    self.key = _dense(h, h, cfg, rngs)
    self.value = _dense(h, h, cfg, rngs)
    self.out = _dense(h, h, cfg, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    q, k, v = ops.project(x, [self.query, self.key, self.value])
    return self.out(ops.attention(q, k, v, self.num_heads))


class Mlp(nnx.Module):
  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
    self.fc1 = _dense(cfg.hidden_size, cfg.mlp_dim, cfg, rngs)
    self.fc2 = _dense(cfg.mlp_dim, cfg.hidden_size, cfg, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(ops.gelu(self.fc1(x)))


class Block(nnx.Module):
  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
    self.norm1 = _norm(cfg, rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.norm2 = _norm(cfg, rngs)
    self.mlp = Mlp(cfg, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.norm1(x)).astype(x.dtype)
    return x + self.mlp(self.norm2(x)).astype(x.dtype)


class ViT(nnx.Module):
  """Large-model interface over ViT: ``__call__(view, train) -> taps``, one
  ``[batch, hidden]`` class token per block, bottom to top, the last after
  the final LayerNorm.

  ``view`` is ``{"image": [B, H, W, 3]}``: uint8 images are mapped to [-1, 1]
  (big_vision's ``value_range(-1, 1)``, and the normalisation of Hugging
  Face's ImageNet-21k ViT processor); float images are used as given. There
  is no dropout: ``train`` is accepted for the interface and ignored.
  """

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
    if cfg.image_size % cfg.patch_size:
      raise UserError(f"image_size {cfg.image_size} is not a multiple of the "
                      f"{cfg.patch_size}-pixel patches; resize the images")
    self.cfg = cfg
    d = cfg.hidden_size
    self.patch_embed = nnx.Conv(3, d, (cfg.patch_size,) * 2, strides=(cfg.patch_size,) * 2,
                                padding="VALID", rngs=rngs, **matmul_dtype(cfg.compute_dtype))
    self.cls = nnx.Param(jnp.zeros((1, 1, d)))
    self.pos_embedding = nnx.Param(
        0.02 * jax.random.normal(rngs.params(), (1, 1 + cfg.grid ** 2, d)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.norm = _norm(cfg, rngs)
    self.tap_dims = (d,) * cfg.num_layers
    self.feature_dim = d

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

  def block_patterns(self) -> list[str]:
    """Regex (relative to this module) for each block's parameters."""
    return [rf"blocks/{i}/" for i in range(self.num_blocks)]

  def sequence_outputs(self, view: Mapping[str, jax.Array], *,
                       train: bool = False) -> list[jax.Array]:
    """``[B, 1 + patches, D]`` states: the embeddings, then each block's
    output before the final norm (Hugging Face's ``hidden_states``)."""
    del train
    img = view["image"]
    if img.ndim != 4 or img.shape[3] != 3:
      raise UserError(f"images of shape {tuple(img.shape)}: the ViT takes RGB "
                      f"[batch, height, width, 3]")
    if tuple(img.shape[1:3]) != (self.cfg.image_size,) * 2:
      raise UserError(f"images are {img.shape[1]}x{img.shape[2]}, the ViT is built for "
                      f"image_size {self.cfg.image_size}: set the dataset's image_size "
                      f"(or the model's) to match")
    x = self.patch_embed(image_to_float(img)).astype(jnp.float32)
    b = x.shape[0]
    x = x.reshape(b, -1, x.shape[-1])
    cls = jnp.broadcast_to(self.cls[...], (b, 1, x.shape[-1]))
    h = jnp.concatenate([cls, x], axis=1) + self.pos_embedding[...]
    states = [h]
    for block in self.blocks:
      h = block(h)
      states.append(h)
    return states

  def __call__(self, view: Mapping[str, jax.Array], *,
               train: bool = False) -> list[jax.Array]:
    states = self.sequence_outputs(view, train=train)[1:]
    taps = [h[:, 0] for h in states[:-1]]
    taps.append(self.norm(states[-1][:, 0]))
    return taps


# --- checkpoints ------------------------------------------------------------------

def resample_posemb(pos: np.ndarray, tokens: int) -> np.ndarray:
  """Position embeddings ``[1, 1 + g*g, D]`` resized to ``tokens`` = 1 + G*G
  rows: the class row kept, the g x g patch grid zoomed to G x G by linear
  interpolation with the corner patches fixed (``scipy.ndimage.zoom`` with
  ``order=1``), as big_vision's ``resample_posemb`` and vision_transformer's
  ``load_pretrained`` do. Logs the resize on stderr."""
  import scipy.ndimage  # installed with jax, which depends on it

  g, new = math.isqrt(pos.shape[1] - 1), math.isqrt(tokens - 1)
  if g * g != pos.shape[1] - 1 or new * new != tokens - 1:
    raise UserError(f"position embeddings of {pos.shape[1]} rows cannot be resized "
                    f"to {tokens}: only square patch grids are supported")
  grid = np.asarray(pos[0, 1:], np.float32).reshape(g, g, -1)
  grid = scipy.ndimage.zoom(grid, (new / g, new / g, 1), order=1)
  assert grid.shape[:2] == (new, new), grid.shape
  print(f"ViT checkpoint: position embeddings resampled from a {g}x{g} to a "
        f"{new}x{new} patch grid (linear, as big_vision)", file=sys.stderr)
  return np.concatenate([pos[:, :1], grid.reshape(1, new * new, -1)], axis=1)


def _bv_block_table() -> dict[str, str]:
  """big_vision names after ``encoderblock_{i}/`` -> ours after ``blocks/{i}/``.
  The AugReg / ViT-paper ``.npz`` files keep pre-linen Flax names (one counter
  over all of a block's submodules); big_vision's own checkpoints have linen
  names (a counter per module type)."""
  table = {}
  for ln1, att, ln2, mlp in (
      ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
      ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")):
    for w in ("scale", "bias"):
      table[f"{ln1}/{w}"], table[f"{ln2}/{w}"] = f"norm1/{w}", f"norm2/{w}"
    for w in ("kernel", "bias"):
      for p in ("query", "key", "value", "out"):
        table[f"{att}/{p}/{w}"] = f"attn/{p}/{w}"
      table[f"{mlp}/Dense_0/{w}"] = f"mlp/fc1/{w}"
      table[f"{mlp}/Dense_1/{w}"] = f"mlp/fc2/{w}"
  return table


_BV_BLOCK = _bv_block_table()
_BV_TOP = {"embedding/kernel": "patch_embed/kernel", "embedding/bias": "patch_embed/bias",
           "cls": "cls", "Transformer/encoder_norm/scale": "norm/scale",
           "Transformer/encoder_norm/bias": "norm/bias"}
# Where the position embeddings lived: the ViT paper and AugReg (with the
# class token's row), big_vision before 2022, big_vision now (patches only).
_BV_POSEMB = ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding",
              "pos_embedding")
_BV_IGNORED = re.compile(r"^(head|pre_logits|MAPHead_0)/")


def _from_big_vision(raw: Mapping[str, np.ndarray]) -> tuple[dict, list[str]]:
  flat, unknown = {}, []
  for name, v in raw.items():
    v = np.asarray(v)
    if _BV_IGNORED.match(name):
      continue
    if name in _BV_TOP:
      flat[_BV_TOP[name]] = v
      continue
    if name in _BV_POSEMB:
      n = v.shape[1] if v.ndim == 3 else 0
      if n and math.isqrt(n) ** 2 == n:
        # Patch rows only (big_vision adds them before the class token): a zero
        # class row makes our "add to every token" the same network.
        v = np.concatenate([np.zeros_like(v[:, :1]), v], axis=1)
      flat["pos_embedding"] = v
      continue
    m = re.match(r"^Transformer/encoderblock_(\d+)/(.+)$", name)
    if m and m.group(2) in _BV_BLOCK:
      flat[f"blocks/{int(m.group(1))}/{_BV_BLOCK[m.group(2)]}"] = v
      continue
    m = re.match(r"^Transformer/encoderblock/(.+)$", name)  # scanned: layer axis first
    if m and m.group(1) in _BV_BLOCK:
      if v.ndim == 0:
        raise ValueError(f"tensor {name} is a scalar, not blocks stacked on the first axis")
      for i in range(v.shape[0]):
        flat[f"blocks/{i}/{_BV_BLOCK[m.group(1)]}"] = v[i]
      continue
    unknown.append(name)
  for k in list(flat):  # heads folded into the hidden axis: [D, H, d] -> [D, H*d]
    v = flat[k]
    kernel = re.search(r"attn/(query|key|value|out)/kernel$", k)
    if kernel and (v.ndim < 2 or v.size == 0):
      raise ValueError(f"tensor {k} has shape {v.shape}, not an attention kernel's")
    if re.search(r"attn/(query|key|value)/kernel$", k):
      flat[k] = v.reshape(v.shape[0], -1)
    elif re.search(r"attn/(query|key|value)/bias$", k):
      flat[k] = v.reshape(-1)
    elif k.endswith("attn/out/kernel"):
      flat[k] = v.reshape(-1, v.shape[-1])
  return flat, unknown


_HF_BLOCK = {  # Hugging Face names after "encoder.layer.{i}." -> ours after "blocks/{i}/"
    "layernorm_before.weight": "norm1/scale", "layernorm_before.bias": "norm1/bias",
    "layernorm_after.weight": "norm2/scale", "layernorm_after.bias": "norm2/bias",
    "intermediate.dense.weight": "mlp/fc1/kernel", "intermediate.dense.bias": "mlp/fc1/bias",
    "output.dense.weight": "mlp/fc2/kernel", "output.dense.bias": "mlp/fc2/bias",
    "attention.output.dense.weight": "attn/out/kernel",
    "attention.output.dense.bias": "attn/out/bias",
    **{f"attention.attention.{p}.{w}": f"attn/{p}/{'kernel' if w == 'weight' else 'bias'}"
       for p in ("query", "key", "value") for w in ("weight", "bias")},
}
_HF_TOP = {"embeddings.cls_token": "cls", "embeddings.position_embeddings": "pos_embedding",
           "embeddings.patch_embeddings.projection.weight": "patch_embed/kernel",
           "embeddings.patch_embeddings.projection.bias": "patch_embed/bias",
           "layernorm.weight": "norm/scale", "layernorm.bias": "norm/bias"}
_HF_IGNORED = re.compile(r"^(pooler\.|classifier\.|embeddings\.mask_token$)")


def _from_hf(raw: Mapping[str, np.ndarray]) -> tuple[dict, list[str]]:
  flat, unknown = {}, []
  for name, v in raw.items():
    key = name[len("vit."):] if name.startswith("vit.") else name  # ...ForImageClassification
    if _HF_IGNORED.match(key):
      continue
    m = re.match(r"^encoder\.layer\.(\d+)\.(.+)$", key)
    ours = (_HF_TOP.get(key) if m is None else
            (f"blocks/{int(m.group(1))}/{_HF_BLOCK[m.group(2)]}"
             if m.group(2) in _HF_BLOCK else None))
    if ours is None:
      unknown.append(name)
      continue
    v = np.asarray(v)
    if ours == "patch_embed/kernel":
      if v.ndim != 4:
        raise ValueError(f"tensor {name} has shape {v.shape}, not a convolution kernel's")
      v = v.transpose(2, 3, 1, 0)            # torch conv OIHW -> HWIO
    elif ours.endswith("/kernel"):
      v = v.T                                # torch Linear stores [out, in]
    flat[ours] = v
  return flat, unknown


def _converted(convert, raw, src: str) -> tuple[dict, list[str]]:
  """``convert(raw)``; a tensor of the wrong rank is a one-line error."""
  try:
    return convert(raw)
  except ValueError as e:
    raise UserError(f"{src}: {e}; pass a ViT checkpoint (big_vision/AugReg .npz or "
                    f"Hugging Face model.safetensors)") from None


def _read_npz(path: str) -> dict[str, np.ndarray]:
  from benchmark.readers import Unreadable, read_npz
  try:
    return read_npz(path)
  except Unreadable as e:
    raise UserError(f"{path}: not a readable .npz ({e}); it is corrupt or "
                    f"truncated: download it again") from None


def load_vit(model: ViT, path: str | os.PathLike) -> None:
  """Writes a ViT checkpoint into ``model``: a big_vision / AugReg ``.npz``
  (told by its zip signature) or a Hugging Face ``model.safetensors`` (the
  file, or its folder), read with numpy. Position embeddings of another
  patch grid are resampled; blocks past the model's depth are dropped (a
  truncated ViT). Classification heads are ignored. Anything else that does
  not fit is a one-line error naming the parameter."""
  p = P.weights_file(path, "ViT checkpoint not found; pass a big_vision/AugReg .npz, "
                          "or a Hugging Face ViT model.safetensors (or its folder)")
  src = str(p)
  with open(p, "rb") as f:
    head = f.read(9)
  if head[:4] == b"PK\x03\x04" or p.suffix == ".npz":
    flat, unknown = _converted(_from_big_vision, _read_npz(src), src)
    if not unknown and "cls" not in flat and "patch_embed/kernel" in flat:
      raise UserError(f"{src}: the checkpoint has no class token 'cls' (a big_vision "
                      f"ViT pooled by average or MAP head); the taps read the class "
                      f"token: pass a class-token ViT such as AugReg's")
  elif p.suffix == ".safetensors" or head[8:9] == b"{":  # 8-byte length, JSON header
    src, raw = P.read_safetensors(src, "ViT")
    flat, unknown = _converted(_from_hf, raw, src)
  else:
    raise UserError(f"{src}: unknown checkpoint format (neither .npz nor safetensors); "
                    f"pass a big_vision/AugReg .npz or a Hugging Face model.safetensors "
                    f"(convert PyTorch .bin/.pth files with transformers' save_pretrained)")
  n = model.num_blocks
  deeper = sorted({int(k.split("/")[1]) for k in flat
                   if k.startswith("blocks/") and int(k.split("/")[1]) >= n})
  if deeper:
    print(f"ViT checkpoint {src}: using its first {n} blocks of {n + len(deeper)}",
          file=sys.stderr)
    flat = {k: v for k, v in flat.items()
            if not (k.startswith("blocks/") and int(k.split("/")[1]) >= n)}
  pos = flat.get("pos_embedding")
  want = model.pos_embedding[...].shape
  if pos is not None and pos.ndim == 3 and pos.shape[2] == want[2] and pos.shape[1] != want[1]:
    flat["pos_embedding"] = resample_posemb(pos, want[1])
  P.load_complete(model, flat, unknown, src, "ViT")


# -- the vit_b16 / vit_tiny backbones (the paper's ImageNet-21k ViT-B/16) -----------

def _vit_file(cfg) -> str:
  """The checkpoint file: a big_vision/AugReg ``.npz``, or a Hugging Face
  folder / ``model.safetensors``."""
  p = cfg.checkpoint
  return p if p.endswith(".npz") else _safetensors(p)


def _vit_weights_key(name: str, cfg) -> str:
  if not cfg.checkpoint:
    if name == "vit_b16":
      raise UserError("vit_b16 needs its weights: pass --config.backbones.vit_b16."
                      "checkpoint=PATH, a big_vision/AugReg .npz (e.g. the ImageNet-21k "
                      "ViT-B/16 B_16-i21k-300ep-....npz) or a Hugging Face ViT folder")
    return "random-init-seed0"   # vit_tiny without a checkpoint (tests, dry runs)
  path = _vit_file(cfg)
  if not os.path.exists(path):
    raise UserError(f"{name}: checkpoint {path} does not exist; pass "
                    f"--config.backbones.{name}.checkpoint=PATH (.npz or Hugging Face folder)")
  if path.endswith(".npz"):
    if not zipfile.is_zipfile(path):
      raise UserError(f"{path}: not a readable .npz (zip) file; download it again")
    st = os.stat(path)
    return _file_digest(path, st.st_size, st.st_mtime)
  return weights_digest(path)


def _vit_config(name: str, info, cfg):
  """The ViT's shape: from the checkpoint's config.json for Hugging Face
  folders, else ViT-B/16 or ViT-Ti/16; the image size is the dataset's."""
  folder = cfg.checkpoint if cfg.checkpoint and os.path.isdir(cfg.checkpoint) else ""
  if folder and os.path.exists(os.path.join(folder, "config.json")):
    c = ViTConfig.from_hf_json(os.path.join(folder, "config.json"))
  else:
    c = ViTConfig.b16() if name == "vit_b16" else ViTConfig.ti16()
  if int(cfg.num_layers):
    c = dataclasses.replace(c, num_layers=int(cfg.num_layers))
  size = int(info.large_spec["image"][0]) if "image" in info.large_spec else c.image_size
  return dataclasses.replace(c, image_size=size, compute_dtype=cfg.compute_dtype)


def _vit_backbone(name: str, description: str) -> Backbone:
  def build(info, cfg, rngs):
    return ViT(_vit_config(name, info, cfg), rngs=rngs)

  def load(cfg, model):
    if not cfg.checkpoint:  # vit_tiny: its seeded random initialisation
      return
    load_vit(model, _vit_file(cfg))

  return Backbone(
      name=name, modality="image", build=build, source="checkpoint",
      defaults={"checkpoint": "", "num_layers": 0, "compute_dtype": "float32"},
      description=description, load=load,
      weights_key=lambda cfg: _vit_weights_key(name, cfg),
      lora_targets=r"attn/(query|key|value|out)$")


BACKBONES.add("vit_b16", _vit_backbone(
    "vit_b16", "ViT-B/16 (86M), the paper's ImageNet-21k model: big_vision/AugReg .npz "
    "or Hugging Face weights from --config.backbones.vit_b16.checkpoint; taps = each "
    "block's class token (the last after the final LayerNorm)"))
BACKBONES.add("vit_tiny", _vit_backbone(
    "vit_tiny", "ViT-Ti/16 shape (5.7M) for CPU runs and tests: AugReg Ti/16 weights from "
    "--config.backbones.vit_tiny.checkpoint, else a seeded random initialisation "
    "(numbers then mean nothing); num_layers>0 truncates it"))
