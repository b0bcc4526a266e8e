"""``--list_config``: the config keys that apply to one dataset and its
backbone, with their values under the preset and a one-line meaning each,
as plain text (the CLI layer, which may name datasets and keys)."""
from __future__ import annotations

import ml_collections

# One line per key. ``data.*.LEAF`` / ``backbones.*.LEAF`` give a meaning to a
# leaf under any dataset or backbone; a full key wins over them.
MEANINGS = {
    "preset": "the preset these values come from (--preset)",
    "batch_size": "training batch size of every component",
    "eval_batch_size": "batch size of predictions (validation, test_id, OOD)",
    "epochs": "training epochs of every component (pre-training: pretrain.epochs)",
    "optimizer": "adam | sgd",
    "momentum": "sgd's momentum (adam ignores it)",
    "weight_decay": "decoupled weight decay (adamw) or L2 added to sgd's update",
    "eval_every": "epochs between ID-validation checks (the best checkpoint is kept)",
    "steps_per_dispatch": "training steps per device dispatch; 0 = a whole epoch",
    "defer_eval": "true: a model that trains the large one is run over test_id and OOD "
                  "only when a method uses it (candidates dropped on ID validation never "
                  "are); false: at the end of its training; the same numbers",
    "trim_batches": "true: each training batch of a text model is cut to the token "
                    "positions its own longest sequence needs (one step per dispatch); "
                    "false: to the training split's longest",
    "bottom_cache": "true: a light-tuned large model's frozen bottom blocks run once per "
                    "split and weights (token states cached on disk) and the top blocks "
                    "train on them (float32: the same numbers; bfloat16: within its rounding); "
                    "false: every step runs them",
    "checkpoint_every_s": "save a resumable checkpoint after an epoch when this many seconds "
                          "passed; 0 = every epoch, -1 = never",
    "wise_alphas": "FT+ZeroShot's mixing coefficients, chosen on ID validation",
    "a1_seed_offset": "A1's second FT run uses seed + this",
    "model.small_hidden": "the small model's hidden widths (MLP)",
    "model.adapter_hidden": "hidden width of each LEVI adapting layer",
    "model.embed_dim": "the small model's embedding width per categorical column",
    "model.a5_heads": "A5's heads; 0 = as many as LEVI's adapting layers",
    "model.cnn_features": "the small CNN's convolution widths",
    "model.oov_rate": "share of categorical ids replaced by the unseen-value id in training; "
                      "0 = off",
    "lora.rank": "LoRA's rank r on the attention projections",
    "lora.alpha": "LoRA's alpha (scale alpha / r)",
    "levi.taps": "blocks LEVI taps: all, or comma-separated indices (e.g. 0,2)",
    "levi.loss_weights": "weights of the adapting layers' losses, comma-separated; '' = equal",
    "soup.kinds": "component kinds whose runs model soups average",
    "soup.lrs": "the soups' lr sweep; '' = protocol.lr_grid, else lr.ft x 1/3, 1, 3",
    "ratatouille.aux": "auxiliary tasks Model Ratatouille recycles; '' = all the dataset has",
    "ratatouille.aux_seed": "seed of the auxiliary fine-tunings (shared by every seed)",
    "ratatouille.aux_lr": "lr of the auxiliary fine-tunings; 0 = lr.ft",
    "pretrain.epochs": "epochs of pre-training the large model on the pretrain rows",
    "pretrain.seed": "seed of that pre-training",
    "pretrain.batch_size": "batch size of that pre-training",
    "eval_batch_tokens": "cap on token positions per prediction batch of a text model "
                         "(cpu preset 4096: CPU caches favour small batches); 0 = none",
    "protocol.lr_grid": "lr grid chosen on ID validation at the first seed; '' = use lr.*",
    "protocol.lr_grid_lp": "the same for linear probing",
    "protocol.max_train_large": "cap on ID train rows of components that train the large "
                                "model (one seeded sample for all); 0 = all rows",
    "l2sp.alphas": "L2-SP's pull towards the pre-trained weights, one run each",
    "l2sp.beta": "L2-SP's weight decay on the head",
    "surgical.blocks": "surgical FT's candidate blocks: all, or comma-separated indices",
    # datasets
    "data.*.split_seed": "seed of the ID train / val / test_id split",
    "data.*.seed": "seed of the data's sampling",
    "data.*.val_fraction": "share of ID rows in val",
    "data.*.test_fraction": "share of ID rows in test_id",
    "data.*.max_train": "cap on ID train rows (seeded sample); 0 = all",
    "data.*.max_val": "cap on ID val rows; 0 = all",
    "data.*.max_test": "cap on test_id rows; 0 = all",
    "data.*.max_eval": "cap on test_id and each OOD group's rows; 0 = all",
    "data.*.image_size": "images are resized to this many pixels square",
    "data.movielens_genre.min_ood_ratings": "an OOD genre needs this many ratings",
    "data.amazon_reviews.max_eval": "cap on each OOD group's rows; 0 = all",
    "data.amazon_reviews_text.max_eval": "cap on each OOD group's rows; 0 = all",
    "data.*.books_version": "which Books file: amazon_reviews_us_Books_<this>",
    "data.*.id_years": "ID = Books ratings of the oldest this many years",
    "data.*.products": "the OOD product categories, comma-separated",
    "data.*.on_bad": "malformed rows: skip (up to max_bad_fraction) | error",
    "data.*.max_bad_fraction": "the share of malformed rows skip tolerates",
    "data.fashion_mnist_quality.val_size": "ID val images taken from the 60k train images",
    "data.fashion_mnist_quality.blur_sigma": "the blur group's Gaussian sigma (pixels)",
    "data.fashion_mnist_quality.noise_sigma": "the noise group's Gaussian sigma (grey levels)",
    "data.fashion_mnist_quality.shifts": "the OOD groups, comma-separated",
    "data.imagenet_sketch.v2_config": "which ImageNet-V2 variant",
    "data.retinopathy_quality.lowres_max_megapixels": "images below this many megapixels "
                                                      "are the OOD low-resolution group",
    "data.synthetic_spurious.n": "rows per split",
    "data.synthetic_spurious.rho_x": "correlation of the transferable feature x with y",
    "data.synthetic_spurious.rho_s": "correlation of the spurious features with y",
    "data.tabular.task": "auto | regression | classification",
    "data.tabular.standardize": "standardise num_* columns with ID train statistics",
    "data.tabular.missing": "empty num_* cells: error | drop (the rows) | mean (of ID train)",
    "data.tabular.min_ood_rows": "OOD groups with fewer rows are left out of ood (still "
                                 "shown); 0 = keep all",
    "report.bootstrap": "bootstrap replicates of the tables' intervals (0: none)",
    "report.confidence": "confidence level of the intervals",
    "report.bootstrap_seed": "random seed of the bootstrap draws",
    "report.min_group_size": "OOD groups with fewer examples are left out of the OOD "
                             "aggregates (still shown); 0 = keep all",
    "report.decimals_rmse": "decimals of RMSE cells",
    "report.decimals_acc": "decimals of accuracy cells",
    # backbones
    "backbones.*.checkpoint": "the pre-trained weights' file or folder; '' = the shipped ones",
    "backbones.*.compute_dtype": "float32 | bfloat16 (matmuls; float32 accumulation)",
    "backbones.*.max_len": "tokens per example (longer sentences are cut)",
    "backbones.*.tokenizer": "tokenizer.json; '' = the checkpoint's",
    "backbones.*.num_layers": "keep the first N blocks; 0 = all",
    "backbones.*.hidden": "hidden widths of the MLP's blocks (each is a tap)",
    "backbones.*.embed_dim": "embedding width per categorical column",
}


def meaning(key: str) -> str:
  if key in MEANINGS:
    return MEANINGS[key]
  if key.startswith("lr."):
    return f"learning rate of {key[3:]} components (protocol.lr_grid, when set, chooses it)"
  parts = key.split(".")
  if len(parts) >= 2 and f"{parts[0]}.*" in MEANINGS:
    return MEANINGS[f"{parts[0]}.*"]
  if len(parts) == 3 and f"{parts[0]}.*.{parts[2]}" in MEANINGS:
    return MEANINGS[f"{parts[0]}.*.{parts[2]}"]
  return ""


def flat(c, prefix: str = "") -> dict:
  out = {}
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def applies(key: str, dataset: str, backbone) -> bool:
  """Whether ``key`` can change a run of ``dataset`` with ``backbone``."""
  top = key.split(".")[0]
  if top == "data":
    return key.startswith(f"data.{dataset}.")
  if top == "backbones":
    return key.startswith(f"backbones.{backbone.name}.")
  if top == "pretrain" or key == "lr.pretrain":
    return backbone.source == "pretrain_split"
  if top == "lora" or key == "lr.lora":
    return backbone.lora_targets is not None
  if key == "model.cnn_features":
    return backbone.modality == "image"
  if key == "model.embed_dim":
    return backbone.modality != "image"
  return True


def show(v) -> str:
  """A value as one writes it after --config.KEY=."""
  if isinstance(v, (tuple, list)):
    return "(" + ",".join(str(x) for x in v) + ")"
  if isinstance(v, str):
    return v if v else "''"
  return str(v)


def config_text(config, base, dataset: str, backbone, overrides=()) -> str:
  """The keys of ``config`` that apply to ``dataset`` and ``backbone``, one
  line each: key, value, where the value comes from when not the default
  (the preset, or the command line), and what the key means."""
  mine, dflt = flat(config), flat(base)
  keys = [k for k in mine if applies(k, dataset, backbone) and k != "preset"]
  width = max(len(k) for k in keys)
  vwidth = min(14, max(len(show(mine[k])) for k in keys))
  lines = [f"config of {dataset}, backbone {backbone.name}, preset {config.preset}: the keys "
           f"that apply",
           "(change one with --config.KEY=VALUE; * = set by the preset, + = on the command "
           "line)"]
  for k in keys:
    mark = "+" if k in overrides else "*" if mine[k] != dflt.get(k) else " "
    lines.append(f"  {k:<{width}} {show(mine[k]):<{vwidth}} {mark} {meaning(k)}".rstrip())
  return "\n".join(lines)
