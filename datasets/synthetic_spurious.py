"""``synthetic_spurious``: the paper's spurious-feature illustration (App. E.8).

Two spurious features (s1, s2), one transferable feature (x), a binary label y.
With z = 2y - 1 and unit-variance features f = rho * z + sqrt(1 - rho^2) * noise:

* pretrain (2,000 rows): s1 (rho_s) and x (rho_x) predict y; s2 absent (0).
* train / val / test_id (2,000 rows each): s2 (rho_s) and x (rho_x) predict y;
  s1 absent (0), the paper's Sec. 3.1 construction: the fine-tuning data cannot
  undo the pre-trained model's use of s1 (Lemma 2).
* ood group ``x_only`` (2,000 rows): only x predicts y; s1 and s2 are noise
  uncorrelated with y.
* auxiliary tasks (Model Ratatouille; 2,000 train and 2,000 val rows each,
  their own labels): ``s1_task``, the pre-training correlations on fresh rows
  (s1 at rho_s, x at rho_x, s2 absent), and ``s2_reversed``, the fine-tuning
  rows with s2's correlation reversed (s2 at -rho_s, x at rho_x, s1 absent).
  Generated after every other split, so they leave those rows unchanged.

The rows are written in the ``tabular`` schema and go through the same loader.
The strengths are stated in docs/fidelity.md (the paper does not give them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.base import DATASETS, DatasetSpec
from datasets.tabular import frame_to_splits


def generate(n: int = 2000, rho_x: float = 0.5, rho_s: float = 0.7,
             seed: int = 0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)

  def feature(z, rho):
    return rho * z + np.sqrt(1.0 - rho ** 2) * rng.standard_normal(len(z))

  frames = []
  # (split, rho of s1, rho of s2); None = absent (all zeros)
  for split, r1, r2 in (("pretrain", rho_s, None), ("train", None, rho_s),
                        ("val", None, rho_s), ("test_id", None, rho_s),
                        ("ood:x_only", 0.0, 0.0),
                        ("aux:s1_task:train", rho_s, None), ("aux:s1_task:val", rho_s, None),
                        ("aux:s2_reversed:train", None, -rho_s),
                        ("aux:s2_reversed:val", None, -rho_s)):
    y = rng.integers(0, 2, n)
    z = 2.0 * y - 1.0
    s1 = np.zeros(n) if r1 is None else feature(z, r1)
    s2 = np.zeros(n) if r2 is None else feature(z, r2)
    x = feature(z, rho_x)
    frames.append(pd.DataFrame({"num_s1": s1, "num_s2": s2, "num_x": x,
                                "label": y, "split": split}))
  return pd.concat(frames, ignore_index=True)


def load(config, data_dir):
  del data_dir
  c = config.data.synthetic_spurious
  df = generate(int(c.n), float(c.rho_x), float(c.rho_s), int(c.seed))
  return frame_to_splits(df, "synthetic_spurious", task="classification",
                         standardize=False, source="synthetic_spurious")


DATASETS.add("synthetic_spurious", DatasetSpec(
    name="synthetic_spurious",
    description="paper App. E.8: spurious s1 (pre-training) and s2 (fine-tuning), "
                "transferable x; OOD = only x predicts y",
    load=load, default_backbone="tabular_mlp",
    data_defaults={"n": 2000, "rho_x": 0.5, "rho_s": 0.7, "seed": 0},
    presets={"smoke": {}, "cpu": {"epochs": 30, "pretrain.epochs": 30,
                                  "model.small_hidden": (64, 32), "model.adapter_hidden": 32},
             "paper": {"epochs": 100, "pretrain.epochs": 100}}))
