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

  A module may also split itself for light-tuning (``benchmark.trainer``
  then computes its frozen bottom once per split and weights, and trains the
  top on it): ``bottom(view, blocks) -> (carry, taps)`` runs the first
  ``blocks`` blocks (``carry``: a dict of per-example arrays, a token view
  when it has a ``mask``), ``top(carry, blocks, train) -> taps`` the rest, and
  ``bottom_patterns(blocks)`` are the regexes of the parameters ``bottom``
  reads. ``bottom``'s taps followed by ``top``'s are ``__call__``'s.
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
  check_safetensors(path)
  return _file_digest(path, st.st_size, st.st_mtime)


def check_safetensors(path: str) -> None:
  """The file's safetensors header parses and its tensors tile the file to
  its end (safetensors' own ``safe_open`` checks: header length, JSON, dtype,
  shapes against offsets, no gap or overlap): a truncated or foreign file
  fails here in one line, before any data is loaded."""
  from safetensors import SafetensorError, safe_open
  try:
    with safe_open(path, framework="numpy"):
      pass
  except (SafetensorError, OSError, ValueError) as e:
    why = (str(e).splitlines() or [type(e).__name__])[0]
    why = why.removeprefix("Error while deserializing header: ")[:160]
    raise UserError(f"{path}: not a complete safetensors file ({why}); download or save it "
                    f"again (Hugging Face format, model.safetensors)") from None


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, pad_id: int | None):
  from benchmark.models.bert import Tokenizer
  return Tokenizer(path) if pad_id is None else Tokenizer(path, pad_id=pad_id)
