"""``t5``: a T5 encoder-decoder in Flax NNX that reads Hugging Face checkpoints,
so the text benchmarks can use t5-small (the paper's T5x-small) without torch
at run time. Its hidden states match ``transformers.T5Model``
(``tests/test_parity_t5.py``): RMS layer norms without mean subtraction or
bias, pre-norm residual blocks, unscaled attention logits, a relative position
bias computed in the first block of each stack and shared by the rest, one
token embedding shared by both stacks, and a final norm on each stack.

A rating is read out of T5 at the decoder's first position: the decoder is run
on one token, ``decoder_start_token_id``, attending to the encoded sentence."""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import ops
from benchmark.models import params as P
from benchmark.models.backbone import (BACKBONES, Backbone, _safetensors, _tokenizer,
                                       weights_digest)

# HF ``ACT2FN`` names T5 configs use; "gelu" is erf, "gelu_new" the tanh form.
_ACTS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": ops.gelu,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
}

_FF_HELP = "use relu, gelu, silu, or gated- before one, e.g. gated-gelu"


def _parse_ff(proj: str) -> tuple[str, bool]:
  """``feed_forward_proj`` -> (activation name, gated), as HF's T5Config reads
  it: ``ACT`` or ``gated-ACT``, with "gated-gelu" meaning the tanh GELU."""
  parts = proj.split("-")
  if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
    raise ValueError(proj)
  act = "gelu_new" if proj == "gated-gelu" else parts[-1]
  if act not in _ACTS:
    raise ValueError(proj)
  return act, len(parts) == 2


@dataclasses.dataclass(frozen=True)
class T5Config:
  """The architecture fields of a Hugging Face T5 ``config.json``."""
  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 2048
  num_layers: int = 6
  num_decoder_layers: int = 6
  num_heads: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = "relu"
  decoder_start_token_id: int = 0
  pad_token_id: int = 0
  tie_word_embeddings: bool = True
  # Not from config.json: dense-layer matmul inputs, "float32" or "bfloat16"
  # (float32 accumulation); see benchmark.models.bert.matmul_dtype.
  compute_dtype: str = "float32"

  def __post_init__(self):
    try:
      _parse_ff(self.feed_forward_proj)
    except ValueError:
      raise UserError(f"T5 feed_forward_proj {self.feed_forward_proj!r} is not "
                      f"supported ({_FF_HELP}); pass a standard T5 "
                      f"checkpoint") from None

  @classmethod
  def small(cls) -> "T5Config":
    """t5-small (60.5M parameters): the defaults."""
    return cls()

  @property
  def activation(self) -> str:
    return _parse_ff(self.feed_forward_proj)[0]

  @property
  def gated(self) -> bool:
    return _parse_ff(self.feed_forward_proj)[1]

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> "T5Config":
    """Reads HF's ``config.json`` (a file, or a folder holding one)."""
    p, raw = P.read_config_json(path, "T5")
    kind = raw.get("model_type", "t5")
    if kind not in ("t5", "mt5"):
      raise UserError(f"{p}: model_type {kind!r} is not T5; pass a T5 "
                      f"checkpoint's folder")
    get = lambda k, d: d if raw.get(k) is None else raw[k]
    try:
      n = int(raw["num_layers"])
      ff = str(get("feed_forward_proj", "relu"))
      try:
        _parse_ff(ff)
      except ValueError:
        raise UserError(f"{p}: feed_forward_proj {ff!r} is not supported "
                        f"({_FF_HELP}); pass a standard T5 checkpoint") from None
      return cls(
          vocab_size=int(raw["vocab_size"]),
          d_model=int(raw["d_model"]),
          d_kv=int(raw["d_kv"]),
          d_ff=int(raw["d_ff"]),
          num_layers=n,
          num_decoder_layers=int(get("num_decoder_layers", n)),
          num_heads=int(raw["num_heads"]),
          relative_attention_num_buckets=int(
              get("relative_attention_num_buckets", 32)),
          relative_attention_max_distance=int(
              get("relative_attention_max_distance", 128)),
          layer_norm_epsilon=float(get("layer_norm_epsilon", 1e-6)),
          feed_forward_proj=ff,
          decoder_start_token_id=int(get("decoder_start_token_id", 0)),
          pad_token_id=int(get("pad_token_id", 0)),
          tie_word_embeddings=bool(get("tie_word_embeddings", True)))
    except KeyError as e:
      raise UserError(f"{p}: config.json lacks {e.args[0]!r}, so it is not a "
                      f"T5 config; pass a T5 checkpoint's folder") from None


def relative_position_bucket(relative_position: np.ndarray, *,
                             bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """HF's ``T5Attention._relative_position_bucket`` in numpy, step for step
  in float32 (log, divide, truncate), so bucket edges fall where torch puts
  them. Positions are static, so this runs once per trace, not on device."""
  rp = np.asarray(relative_position, dtype=np.int64)
  buckets = np.zeros_like(rp)
  if bidirectional:
    num_buckets //= 2
    buckets += (rp > 0).astype(np.int64) * num_buckets
    rp = np.abs(rp)
  else:
    rp = -np.minimum(rp, 0)
  max_exact = num_buckets // 2
  is_small = rp < max_exact
  with np.errstate(divide="ignore"):  # log(0) = -inf, then masked by is_small
    scaled = (np.log(rp.astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact))
              * np.float32(num_buckets - max_exact))
  large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return buckets + np.where(is_small, rp, large)


class T5LayerNorm(nnx.Module):
  """RMS norm: scale only, no mean subtraction, no bias (HF ``T5LayerNorm``)."""

  def __init__(self, dim: int, eps: float):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return self.scale[...] * (x * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)


def _dense(n_in: int, n_out: int, std: float, rngs: nnx.Rngs,
           compute_dtype: str = "float32") -> nnx.Linear:
  # HF's T5 init (normal, fan-based std), for training from scratch.
  from benchmark.models.bert import matmul_dtype
  return nnx.Linear(n_in, n_out, use_bias=False, rngs=rngs,
                    kernel_init=nnx.initializers.normal(std),
                    **matmul_dtype(compute_dtype))


class T5Attention(nnx.Module):
  """Multi-head attention with unscaled logits; the first block of a stack
  also owns the relative position bias table."""

  def __init__(self, cfg: T5Config, *, relative_bias: bool, rngs: nnx.Rngs):
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
    self.q = _dense(d, inner, (d * cfg.d_kv) ** -0.5, rngs, cfg.compute_dtype)
    self.k = _dense(d, inner, d ** -0.5, rngs, cfg.compute_dtype)
    self.v = _dense(d, inner, d ** -0.5, rngs, cfg.compute_dtype)
    self.o = _dense(inner, d, inner ** -0.5, rngs, cfg.compute_dtype)
    self.num_buckets = cfg.relative_attention_num_buckets
    self.max_distance = cfg.relative_attention_max_distance
    self.relative_attention_bias = (
        nnx.Embed(self.num_buckets, cfg.num_heads, rngs=rngs,
                  embedding_init=nnx.initializers.normal(d ** -0.5))
        if relative_bias else None)

  def position_bias(self, q_len: int, k_len: int, *,
                    bidirectional: bool) -> jax.Array:
    """``[1, heads, q_len, k_len]`` bias from the relative-position table."""
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    bucket = relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=self.num_buckets,
        max_distance=self.max_distance)
    values = self.relative_attention_bias.embedding[...][jnp.asarray(bucket)]
    return jnp.transpose(values, (2, 0, 1))[None]

  def __call__(self, x: jax.Array, kv: jax.Array, keep: jax.Array,
               bias: jax.Array | None) -> jax.Array:
    """``keep``: bool, broadcastable to ``[B, heads, Tq, Tk]``."""
    b, tq, _ = x.shape
    tk = kv.shape[1]
    q = self.q(x).reshape(b, tq, self.num_heads, self.d_kv)
    k = self.k(kv).reshape(b, tk, self.num_heads, self.d_kv)
    v = self.v(kv).reshape(b, tk, self.num_heads, self.d_kv)
    scores = jnp.einsum("bqnd,bknd->bnqk", q, k)  # T5: no 1/sqrt(d_kv)
    if bias is not None:
      scores = scores + bias
    scores = jnp.where(keep, scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1)
    ctx = jnp.einsum("bnqk,bknd->bqnd", probs, v)
    return self.o(ctx.reshape(b, tq, self.num_heads * self.d_kv))


class T5FeedForward(nnx.Module):
  """``wo(act(wi x))``, or ``wo(act(wi_0 x) * wi_1 x)`` when gated (v1.1)."""

  def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
    d, f = cfg.d_model, cfg.d_ff
    self.act = _ACTS[cfg.activation]
    self.gated = cfg.gated
    if self.gated:
      self.wi_0 = _dense(d, f, d ** -0.5, rngs, cfg.compute_dtype)
      self.wi_1 = _dense(d, f, d ** -0.5, rngs, cfg.compute_dtype)
    else:
      self.wi = _dense(d, f, d ** -0.5, rngs, cfg.compute_dtype)
    self.wo = _dense(f, d, f ** -0.5, rngs, cfg.compute_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
    return self.wo(h)


class T5Block(nnx.Module):
  """Pre-norm residual sub-layers: self-attention, cross-attention (decoder
  only), feed-forward."""

  def __init__(self, cfg: T5Config, *, decoder: bool, relative_bias: bool,
               rngs: nnx.Rngs):
    eps = cfg.layer_norm_epsilon
    self.self_attn_norm = T5LayerNorm(cfg.d_model, eps)
    self.self_attn = T5Attention(cfg, relative_bias=relative_bias, rngs=rngs)
    if decoder:
      self.cross_attn_norm = T5LayerNorm(cfg.d_model, eps)
      self.cross_attn = T5Attention(cfg, relative_bias=False, rngs=rngs)
    self.ff_norm = T5LayerNorm(cfg.d_model, eps)
    self.ff = T5FeedForward(cfg, rngs=rngs)
    self.decoder = decoder

  def __call__(self, h: jax.Array, keep: jax.Array, bias: jax.Array,
               enc: jax.Array | None = None,
               enc_keep: jax.Array | None = None) -> jax.Array:
    x = self.self_attn_norm(h)
    h = h + self.self_attn(x, x, keep, bias)
    if self.decoder:
      # HF's cross-attention bias is all zeros: left out.
      h = h + self.cross_attn(self.cross_attn_norm(h), enc, enc_keep, None)
    return h + self.ff(self.ff_norm(h))


class T5Stack(nnx.Module):
  """Blocks and the final norm; block 0's relative bias serves every block."""

  def __init__(self, cfg: T5Config, n: int, *, decoder: bool, rngs: nnx.Rngs):
    self.blocks = nnx.List([T5Block(cfg, decoder=decoder, relative_bias=i == 0,
                                    rngs=rngs) for i in range(n)])
    self.final_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)
    self.decoder = decoder

  def __call__(self, h: jax.Array, keep: jax.Array, enc: jax.Array | None = None,
               enc_keep: jax.Array | None = None) -> list[jax.Array]:
    """States as HF reports them: the input, each block's output, and the
    last one replaced by its final-normed value."""
    t = h.shape[1]
    bias = self.blocks[0].self_attn.position_bias(t, t, bidirectional=not self.decoder)
    states = [h]
    for block in self.blocks:
      h = block(h, keep, bias, enc, enc_keep)
      states.append(h)
    states[-1] = self.final_norm(h)
    return states


class T5Backbone(nnx.Module):
  """Large-model interface over T5: ``__call__(view, train) -> taps``, bottom
  to top: each encoder block's output mean-pooled over the mask, then each
  decoder block's output at its one position (``decoder_start_token_id``).
  The last tap is the final-normed decoder state a linear head reads.

  ``view`` is ``{"ids": int32 [B, T], "mask": int32 [B, T]}``, right padded,
  mask 1 on tokens. There is no dropout: ``train`` is accepted for the
  interface and ignored, so fine-tuning runs the deterministic network.
  There is no LM head: it would be the tied embedding, unused by the taps.
  """

  def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
    if cfg.num_layers < 1 or cfg.num_decoder_layers < 1:
      raise UserError(f"T5 needs at least one encoder and one decoder layer, "
                      f"got {cfg.num_layers} and {cfg.num_decoder_layers}; fix "
                      f"config.json")
    self.cfg = cfg
    self.shared = nnx.Embed(cfg.vocab_size, cfg.d_model, rngs=rngs,
                            embedding_init=nnx.initializers.normal(1.0))
    self.encoder = T5Stack(cfg, cfg.num_layers, decoder=False, rngs=rngs)
    self.decoder = T5Stack(cfg, cfg.num_decoder_layers, decoder=True, rngs=rngs)
    self.tap_dims = (cfg.d_model,) * (cfg.num_layers + cfg.num_decoder_layers)
    self.feature_dim = cfg.d_model

  @property
  def num_blocks(self) -> int:
    return len(self.encoder.blocks) + len(self.decoder.blocks)

  def block_patterns(self) -> list[str]:
    """Regex (relative to this module) for each block's parameters, in tap
    order. The trailing "/" keeps block 1 from matching block 10; the harness
    prefixes "^large/", and "encoder/" is no substring of "decoder/"."""
    return ([rf"encoder/blocks/{i}/" for i in range(len(self.encoder.blocks))]
            + [rf"decoder/blocks/{i}/" for i in range(len(self.decoder.blocks))])

  def sequence_outputs(self, view: Mapping[str, jax.Array], *,
                       train: bool = False) -> dict[str, list[jax.Array]]:
    """``{"encoder": [B, T, D] states, "decoder": [B, 1, D] states}``, each
    HF's ``encoder_hidden_states`` / ``decoder_hidden_states`` for
    ``decoder_input_ids = [[decoder_start_token_id]]``. Padding positions of
    the encoder hold values but mean nothing."""
    del train
    ids, mask = view["ids"], view["mask"]
    b = ids.shape[0]
    table = self.shared.embedding[...]
    enc_keep = mask.astype(bool)[:, None, None, :]
    enc = self.encoder(table[ids], enc_keep)
    start = jnp.full((b, 1), self.cfg.decoder_start_token_id, jnp.int32)
    causal = jnp.ones((1, 1, 1, 1), bool)  # one position: attends to itself
    dec = self.decoder(table[start], causal, enc[-1], enc_keep)
    return {"encoder": enc, "decoder": dec}

  def __call__(self, view: Mapping[str, jax.Array], *,
               train: bool = False) -> list[jax.Array]:
    out = self.sequence_outputs(view, train=train)
    enc = out["encoder"]
    m = view["mask"].astype(enc[0].dtype)[..., None]
    denom = jnp.maximum(m.sum(axis=1), 1.0)
    pooled = [(h * m).sum(axis=1) / denom for h in enc[1:]]
    return pooled + [h[:, 0] for h in out["decoder"][1:]]


# --- Hugging Face checkpoints -------------------------------------------------

_ATTN = {"SelfAttention": "self_attn", "EncDecAttention": "cross_attn"}
_BLOCK_RE = re.compile(
    r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d)\.(.+)\.weight$")
# Tensors with no place in the backbone: the LM head (the tied embedding, or
# a v1.1 head the taps do not use) and a cross-attention bias HF never uses.
_IGNORED = re.compile(
    r"^(lm_head\.weight|decoder\.block\.0\.layer\.1\.EncDecAttention"
    r"\.relative_attention_bias\.weight)$")
_EMBED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _hf_to_ours(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """Our flat path and array for one HF tensor; None if it has no place."""
  if name == "shared.weight":
    return "shared/embedding", value
  for stack in ("encoder", "decoder"):
    if name == f"{stack}.final_layer_norm.weight":
      return f"{stack}/final_norm/scale", value
  m = _BLOCK_RE.match(name)
  if not m:
    return None
  stack, i, sub, rest = m.groups()
  ff_sub = "2" if stack == "decoder" else "1"
  base = f"{stack}/blocks/{i}"
  if rest == "layer_norm":
    norm = {"0": "self_attn_norm", ff_sub: "ff_norm"}
    if stack == "decoder":
      norm["1"] = "cross_attn_norm"
    return (f"{base}/{norm[sub]}/scale", value) if sub in norm else None
  mod, _, leaf = rest.partition(".")
  want = {"SelfAttention": "0", "EncDecAttention": "1"}.get(mod)
  if want is not None and sub == want and (stack == "decoder" or want == "0"):
    if leaf in ("q", "k", "v", "o"):
      # torch Linear stores [out, in]; nnx kernels are [in, out].
      return f"{base}/{_ATTN[mod]}/{leaf}/kernel", value.T
    if leaf == "relative_attention_bias":  # [buckets, heads] in both
      return f"{base}/{_ATTN[mod]}/relative_attention_bias/embedding", value
    return None
  if mod == "DenseReluDense" and sub == ff_sub and leaf in ("wi", "wi_0", "wi_1", "wo"):
    return f"{base}/ff/{leaf}/kernel", value.T
  return None


def load_hf_t5(model: T5Backbone, path: str | os.PathLike) -> None:
  """Writes a HF T5 ``model.safetensors`` (file, or folder holding it) into
  ``model``. Reads with numpy so torch is not needed; every model parameter
  must be in the file, else it is a checkpoint of another architecture."""
  src, raw = P.read_safetensors(path, "T5")

  raw = {(k[len("transformer."):] if k.startswith("transformer.") else k): v
         for k, v in raw.items()}
  if "shared.weight" not in raw:  # some exports keep only the stacks' copies
    for k in _EMBED_COPIES:
      if k in raw:
        raw["shared.weight"] = raw[k]
        break
  flat: dict[str, np.ndarray] = {}
  unknown = []
  for name, value in raw.items():
    if _IGNORED.match(name):
      continue
    if name in _EMBED_COPIES:
      if not np.array_equal(value, raw["shared.weight"]):
        raise UserError(f"{src}: {name} differs from shared.weight; untied "
                        f"encoder/decoder embeddings are not supported, pass "
                        f"a standard T5 checkpoint")
      continue
    mapped = _hf_to_ours(name, value)
    if mapped is None:
      unknown.append(name)
    else:
      flat[mapped[0]] = mapped[1]
  P.load_complete(model, flat, unknown, src, "T5")


# -- the t5_small backbone (the paper's T5x-small): weights from a path the user gives

def _t5_dir(cfg) -> str:
  if not cfg.checkpoint:
    raise UserError("t5_small needs its weights: pass --config.backbones.t5_small.checkpoint="
                    "DIR, a Hugging Face-format t5-small folder (config.json, "
                    "model.safetensors, tokenizer.json)")
  return cfg.checkpoint


def _t5_build(info, cfg, rngs):
  folder = cfg.checkpoint if cfg.checkpoint and os.path.isdir(cfg.checkpoint) else ""
  conf = os.path.join(folder, "config.json") if folder else ""
  c = T5Config.from_json(conf) if conf and os.path.exists(conf) else T5Config.small()
  return T5Backbone(dataclasses.replace(c, compute_dtype=cfg.compute_dtype), rngs=rngs)


def _t5_load(cfg, model):
  load_hf_t5(model, _safetensors(_t5_dir(cfg)))


def _t5_prepare(texts, cfg):
  path = cfg.tokenizer or os.path.join(_t5_dir(cfg), "tokenizer.json")
  if not os.path.exists(path):
    raise UserError(f"t5_small: no tokenizer at {path}; put tokenizer.json in the "
                    f"checkpoint folder or pass --config.backbones.t5_small.tokenizer=FILE")
  return _tokenizer(path, None).encode_batch(list(texts), int(cfg.max_len))


BACKBONES.add("t5_small", Backbone(
    name="t5_small", modality="text", build=_t5_build, source="checkpoint",
    defaults={"checkpoint": "", "tokenizer": "", "max_len": 96,
              "compute_dtype": "float32"},
    description="T5-small encoder-decoder (60.5M, the paper's T5x-small), Hugging "
                "Face-format weights from --config.backbones.t5_small.checkpoint; taps = "
                "encoder blocks (mean-pooled) then decoder blocks (first position)",
    load=_t5_load, weights_key=lambda cfg: weights_digest(_safetensors(_t5_dir(cfg))),
    prepare=_t5_prepare, lora_targets=r"(self_attn|cross_attn)/(q|k|v|o)$"))
