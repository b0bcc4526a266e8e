"""Parameters as flat ``{"large/blocks/0/kernel": array}`` dicts: what the
store saves, what weight averaging mixes and what freezing rules match."""
from __future__ import annotations

import re
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from benchmark.errors import UserError


def path_str(path) -> str:
  return "/".join(str(getattr(p, "key", p)) for p in path)


def _walk(tree, prefix=()) -> Iterator[tuple[tuple, object]]:
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      yield from _walk(v, prefix + (k,))
  else:
    yield prefix, tree


def flat_state(state: nnx.State) -> dict[str, np.ndarray]:
  return {path_str(p): np.asarray(v) for p, v in _walk(nnx.to_pure_dict(state))}


def flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
  return flat_state(nnx.state(model, nnx.Param))


def param_paths(model: nnx.Module) -> list[str]:
  return list(flat_params(model))


def count(flat: Mapping[str, np.ndarray]) -> int:
  return int(sum(np.size(v) for v in flat.values()))


def load_params(model: nnx.Module, flat: Mapping[str, np.ndarray], *,
                source: str = "checkpoint", strict: bool = False) -> int:
  """Writes ``flat`` into ``model``'s matching variables (params and batch
  statistics alike). Returns how many were set. A shape mismatch means a
  checkpoint of another architecture: a one-line error names it."""
  state = nnx.state(model)
  pure = nnx.to_pure_dict(state)
  n = 0

  def visit(tree, prefix=()):
    nonlocal n
    for k, v in list(tree.items()):
      p = prefix + (k,)
      if isinstance(v, Mapping):
        visit(v, p)
        continue
      key = path_str(p)
      if key in flat:
        new = np.asarray(flat[key])
        if not (np.issubdtype(new.dtype, np.integer) or np.issubdtype(new.dtype, np.floating)
                or new.dtype == np.bool_):
          raise UserError(f"{source}: parameter {key} holds {new.dtype} values, not numbers "
                          f"a network's weights are made of; the checkpoint is damaged or "
                          f"not a model's")
        if tuple(new.shape) != tuple(np.shape(v)):
          raise UserError(
              f"{source}: parameter {key} has shape {tuple(new.shape)}, the model "
              f"expects {tuple(np.shape(v))}: the checkpoint is of another "
              f"architecture; pass one of the configured architecture")
        tree[k] = jax.numpy.asarray(new, dtype=np.asarray(v).dtype)
        n += 1

  visit(pure)
  if strict and n != len(flat):
    missing = sorted(set(flat) - set(flat_state(state)))[:3]
    raise UserError(f"{source}: parameters {missing} are not in the model; "
                    f"pass a checkpoint of the configured architecture")
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return n


def rule_matcher(rules: Sequence[tuple[str, bool]]):
  """big_vision-style freezing: an ordered list of (regex, trainable); the first
  regex that matches a parameter path decides. Every parameter must match one."""
  compiled = [(re.compile(r), t) for r, t in rules]

  def trainable(path: str) -> bool:
    for rx, t in compiled:
      if rx.search(path):
        return t
    raise ValueError(f"no freezing rule matches parameter {path!r}; "
                     f"rules: {[r for r, _ in rules]}")
  return trainable


def check_rules(model: nnx.Module, rules: Sequence[tuple[str, bool]]) -> tuple[int, int]:
  """Checks the rules cover every parameter; returns (trainable, total) counts."""
  match = rule_matcher(rules)
  flat = flat_params(model)
  n_train = sum(np.size(v) for k, v in flat.items() if match(k))
  return int(n_train), count(flat)


def weights_file(path, missing: str):
  """``path``, or ``path/model.safetensors`` for a folder; ``missing`` is the
  one-line error (after the path) when there is no such file."""
  from pathlib import Path
  p = Path(path)
  if p.is_dir():
    p = p / "model.safetensors"
  if not p.is_file():
    raise UserError(f"{p}: {missing}")
  return p


def read_safetensors(path, what: str) -> tuple[str, dict[str, np.ndarray]]:
  """A Hugging Face ``model.safetensors`` (the file, or its folder) as numpy
  arrays, without torch. Missing or unreadable files: one-line errors naming
  the file and the fix. Returns (file path, tensors)."""
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  src = str(weights_file(path, f"{what} weights file not found; pass the path of a "
                               f"Hugging Face model.safetensors (or its folder)"))
  try:
    return src, load_file(src)
  except (SafetensorError, OSError, ValueError) as e:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"{src}: not a readable safetensors file ({msg}); it is "
                    f"corrupt or truncated: restore or re-copy it") from None


def load_complete(model: nnx.Module, flat: Mapping[str, np.ndarray], unknown: list[str],
                  src: str, what: str) -> None:
  """Loads a converted checkpoint that must be exactly ``model``'s: tensors
  that map to nothing (``unknown``) or parameters left unset are errors that
  say the checkpoint is of another architecture."""
  if unknown:
    raise UserError(f"{src}: tensors {sorted(unknown)[:3]} (of {len(unknown)}) "
                    f"are not {what} weights; pass a {what} checkpoint")
  missing = sorted(set(param_paths(model)) - set(flat))
  if missing:
    raise UserError(f"{src}: {len(missing)} tensors the model needs are missing "
                    f"(e.g. {missing[:3]}): the checkpoint is of another "
                    f"architecture or size; pass a {what} checkpoint matching "
                    f"config.json")
  load_params(model, flat, source=src, strict=True)


def read_config_json(path, what: str):
  """A Hugging Face ``config.json`` (the file, or its folder) as (path, dict);
  one-line errors naming the file and the fix."""
  import json
  from pathlib import Path
  p = Path(path)
  if p.is_dir():
    p = p / "config.json"
  try:
    return p, json.loads(p.read_text())
  except FileNotFoundError:
    raise UserError(f"{p}: no {what} config.json there; pass the folder of a "
                    f"Hugging Face {what} checkpoint") from None
  except (OSError, ValueError) as e:
    raise UserError(f"{p}: unreadable config.json ({e}); restore the file "
                    f"from the checkpoint's source") from None
