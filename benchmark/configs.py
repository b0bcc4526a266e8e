"""Configs: plain ``ml_collections.ConfigDict``s (big_vision style).

Precedence, lowest first: ``base_config()``; the preset (``smoke`` for CI in
seconds, ``cpu`` for a 2-core machine in minutes, ``paper`` for the paper's
protocol on accelerators); the dataset's own preset values; the user's
``--config.KEY=VALUE`` overrides. Every key exists in the base config, so a
typo in an override is an error, not a silently ignored setting.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import ml_collections

from benchmark.errors import UserError

PRESETS = ("smoke", "cpu", "paper")

# The paper sweeps learning rates {1e-4, 1e-3, 1e-2, 1e-1} ({1e-3, ..., 10}
# for LP) and selects on ID validation (App. D.3). Each component kind
# declares its lr key, default and grid (``benchmark.kinds``).
PAPER_LR_GRID = "1e-4,1e-3,1e-2,1e-1"     # App. D.3, every method ...
PAPER_LR_GRID_LP = "1e-3,1e-2,1e-1,1,10"  # ... but linear probing


def base_config(data_defaults: Mapping[str, Mapping[str, Any]] | None = None,
                backbone_defaults: Mapping[str, Mapping[str, Any]] | None = None
                ) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.preset = "cpu"
  c.batch_size = 100
  c.eval_batch_size = 1024
  # > 0: a prediction batch of a text model holds at most this many token
  # positions (fewer examples for longer sequences): CPU caches favour small
  # batches (docs/performance.md), accelerators large ones. 0 = no cap.
  c.eval_batch_tokens = 0
  c.epochs = 20
  c.optimizer = "adam"        # adam (text, tabular) | sgd (vision)
  c.momentum = 0.9
  c.weight_decay = 0.0
  c.eval_every = 1            # epochs between ID-validation checks
  c.steps_per_dispatch = 0    # 0: a whole epoch per device dispatch
  # Mid-training checkpoints (orbax, WORKDIR/ckpt/): after an epoch, when this
  # many seconds passed since the last one; 0 = every epoch, -1 = never.
  c.checkpoint_every_s = 60.0
  # True: a model that trains the large one predicts test_id and OOD only when
  # a method uses it (model selection drops the rest unevaluated); the
  # numbers are the same either way. False: at the end of its training.
  c.defer_eval = True
  # True: each training batch of a text model is cut to the token positions
  # its own longest sequence needs (the same batches, less padding: the
  # numbers move by float rounding only). False: the training split's longest.
  c.trim_batches = False
  # True: a light-tuned large model's frozen bottom blocks (HT, LEVI light,
  # A3: the lower half) run once per split and weights, their token states
  # cached on disk (float32, memory-mapped), and the top blocks train and
  # predict on them: the same arithmetic in float32 (to 1e-5); in bfloat16
  # the bottom's rounding depends on the batch shapes, so trained numbers
  # move (docs/fidelity.md). False: every step runs them.
  c.bottom_cache = False
  from benchmark import kinds
  c.lr = ml_collections.ConfigDict(kinds.lr_defaults())
  c.model = ml_collections.ConfigDict(dict(
      small_hidden=(512, 256),  # App. D.2: two-layer MLP, 512 and 256 units
      adapter_hidden=256,       # App. D.2: 256 (recommendation), 1024 (vision)
      embed_dim=32,             # small model's embedding width per id column
      a5_heads=0,               # A5's heads; 0 = as many as LEVI's adapters
      cnn_features=(32, 64, 64, 64),  # App. D.2: the vision small model's convolutions
      # Categorical ids replaced by the out-of-vocabulary id 0 in training
      # batches, so that values unseen in ID training get a trained embedding
      # (docs/fidelity.md); 0 = off (id 0 then keeps its random init).
      oov_rate=0.05,
  ))
  # LoRA (Sec. 5.3) on the large model's attention projections: rows lora and
  # levi_lora. The paper gives no rank; 8 with alpha 8 (scale 1) is LoRA's
  # common default (docs/fidelity.md).
  c.lora = ml_collections.ConfigDict(dict(rank=8, alpha=8.0))
  c.levi = ml_collections.ConfigDict(dict(
      taps="all",               # "all" or comma-separated block indices, e.g. "0,2"
      loss_weights="",          # App. C: comma-separated weights; "" = equal
  ))
  # WiSE-FT's mixing coefficients (Wortsman et al. 2022b), chosen on ID val.
  c.wise_alphas = tuple(round(0.1 * i, 1) for i in range(11))
  c.a1_seed_offset = 1000      # A1's second FT run uses seed + offset
  # Model soups (methods/soups.py): the kinds whose runs are averaged, and the
  # learning rates of the sweep ("" = protocol.lr_grid, else lr.ft x 1/3, 1, 3).
  c.soup = ml_collections.ConfigDict(dict(kinds="ft", lrs=""))
  # Model Ratatouille (methods/soups.py): the auxiliary tasks recycled ("" =
  # every one the dataset declares), the seed of their fine-tunings (one per
  # task, shared by every target seed) and their lr (0 = lr.ft).
  c.ratatouille = ml_collections.ConfigDict(dict(aux="", aux_seed=0, aux_lr=0.0))
  c.pretrain = ml_collections.ConfigDict(dict(epochs=20, seed=0, batch_size=100))
  # App. D.3: learning-rate grids, chosen per component kind on ID validation
  # at the first seed (benchmark/sweep.py); "" = no grid, use lr.* as given.
  # max_train_large: ID training rows of the components that train the large
  # model (light, full, LoRA; data.cap_train: one seeded sample shared by all
  # of them); those on a frozen large model or none train on every row. 0 = all.
  c.protocol = ml_collections.ConfigDict(dict(lr_grid="", lr_grid_lp="", max_train_large=0))
  # Tables and reports (benchmark/results.py): bootstrap replicates and
  # confidence of the intervals; OOD groups with fewer examples than
  # min_group_size are shown but left out of the aggregates (0: none left
  # out); decimals shown per metric. None of these changes a run.
  c.report = ml_collections.ConfigDict(dict(
      bootstrap=1000, confidence=0.95, bootstrap_seed=0, min_group_size=30,
      decimals_rmse=3, decimals_acc=1))
  c.backbones = ml_collections.ConfigDict(
      {k: dict(v) for k, v in (backbone_defaults or {}).items()})
  c.data = ml_collections.ConfigDict(
      {k: dict(v) for k, v in (data_defaults or {}).items()})
  for group, values in kinds.config_defaults().items():  # groups kinds add (e.g. l2sp)
    if group in c:
      raise ValueError(f"config group {group!r} of a component kind exists already")
    c[group] = ml_collections.ConfigDict(dict(values))
  return c


GENERIC_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"epochs": 3, "pretrain.epochs": 3, "model.small_hidden": (32, 16),
              "model.adapter_hidden": 16, "model.embed_dim": 8},
    "cpu": {"eval_batch_tokens": 4096},
    "paper": {"protocol.lr_grid": PAPER_LR_GRID, "protocol.lr_grid_lp": PAPER_LR_GRID_LP},
}


def set_dotted(c: ml_collections.ConfigDict, key: str, value: Any) -> None:
  *parents, leaf = key.split(".")
  node = c
  for p in parents:
    if p not in node:
      raise UserError(f"unknown config key {key!r}; see --list_config for valid keys")
    node = node[p]
  if leaf not in node:
    raise UserError(f"unknown config key {key!r}; see --list_config for valid keys")
  node[leaf] = value


def expand_backbones(c: ml_collections.ConfigDict, key: str) -> list[str]:
  """``backbones.*.KEY`` (a dataset preset's model setting, e.g. ``max_len``)
  -> ``backbones.<name>.KEY`` for every backbone that has KEY; other keys
  as they are. Datasets thus key model settings without naming a backbone."""
  if not key.startswith("backbones.*."):
    return [key]
  leaf = key[len("backbones.*."):]
  return [f"backbones.{name}.{leaf}" for name in c.backbones if leaf in c.backbones[name]]


def get_dotted(c: ml_collections.ConfigDict, key: str) -> Any:
  node = c
  for p in key.split("."):
    node = node[p]
  return node


def build(preset: str, dataset_presets: Mapping[str, Mapping[str, Any]],
          base: ml_collections.ConfigDict,
          overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    from benchmark.registry import closest
    hint = closest(preset, list(PRESETS))
    raise UserError(f"unknown preset {preset!r}."
                    + (f" Did you mean {hint[0]}?" if hint else "")
                    + f" Valid presets: {', '.join(PRESETS)}")
  c = ml_collections.ConfigDict(base.to_dict())
  c.preset = preset
  for layer in (GENERIC_PRESETS[preset], dataset_presets.get(preset, {})):
    for k, v in layer.items():
      for key in expand_backbones(c, k):
        set_dotted(c, key, v)
  for k, v in overrides.items():
    set_dotted(c, k, v)
  validate(c)
  c.lock()
  return c


def _positive(name: str, v: Any) -> None:
  if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
    raise UserError(f"config {name}={v!r} must be a positive finite number; "
                    f"fix --config.{name}")


def parse_grid(text: str, name: str) -> list[float]:
  text = str(text).strip()
  if not text:
    return []
  try:
    values = [float(x) for x in text.split(",")]
  except ValueError:
    values = []
  if not values or any(not v > 0 or v != v or v == float("inf") for v in values):
    raise UserError(f"config protocol.{name}={text!r}: give comma-separated positive "
                    f"learning rates, e.g. --config.protocol.{name}=1e-4,1e-3,1e-2")
  return values


def validate(c: ml_collections.ConfigDict) -> None:
  parse_grid(c.protocol.lr_grid, "lr_grid")
  parse_grid(c.protocol.lr_grid_lp, "lr_grid_lp")
  for k, v in c.lr.items():
    _positive(f"lr.{k}", v)
  for k in ("batch_size", "eval_batch_size", "epochs", "eval_every"):
    _positive(k, c[k])
  _positive("pretrain.epochs", c.pretrain.epochs)
  if int(c.eval_batch_tokens) < 0:
    raise UserError(f"config eval_batch_tokens={c.eval_batch_tokens!r} must be >= 0; fix "
                    f"--config.eval_batch_tokens (0 = no cap)")
  if int(c.protocol.max_train_large) < 0 or c.protocol.max_train_large != int(
      c.protocol.max_train_large):
    raise UserError(f"config protocol.max_train_large={c.protocol.max_train_large!r} must be a "
                    f"whole number >= 0; fix --config.protocol.max_train_large (0 = every row)")
  if not 0.0 <= c.model.oov_rate < 1.0:
    raise UserError(f"config model.oov_rate={c.model.oov_rate!r} must be in [0, 1); "
                    f"fix --config.model.oov_rate (0 turns it off)")
  if not math.isfinite(c.checkpoint_every_s):
    raise UserError("config checkpoint_every_s must be finite (0: every epoch, -1: never); "
                    "fix --config.checkpoint_every_s")
  _positive("pretrain.batch_size", c.pretrain.batch_size)
  if c.optimizer not in ("adam", "sgd"):
    raise UserError(f"config optimizer={c.optimizer!r}: use adam or sgd "
                    f"(--config.optimizer=adam)")
  if c.weight_decay < 0 or not math.isfinite(c.weight_decay):
    raise UserError("config weight_decay must be >= 0; fix --config.weight_decay")
  for a in c.wise_alphas:
    if not 0.0 <= a <= 1.0:
      raise UserError(f"config wise_alphas has {a}; mixing coefficients lie in [0, 1]")
  if c.levi.loss_weights:
    try:
      w = [float(x) for x in str(c.levi.loss_weights).split(",")]
    except ValueError:
      raise UserError(f"config levi.loss_weights={c.levi.loss_weights!r}: give "
                      f"comma-separated numbers, e.g. --config.levi.loss_weights=1,1,2")
    if any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
      raise UserError("config levi.loss_weights must be non-negative and not all zero")
