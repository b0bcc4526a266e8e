"""The ``Backbone`` record, the ``BACKBONES`` registry each backbone's module
adds itself to, and the weight-file helpers they share (content digests,
safetensors checks, cached tokenizers)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Any, Callable, Mapping

from flax import nnx

from benchmark.errors import UserError
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


# -- weights and tokenizers from Hugging Face-format files -------------------------

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
