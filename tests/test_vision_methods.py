"""The vision rows on a tiny ViT and the 4-layer CNN, in process, on a
learnable synthetic image benchmark (no TFDS): every method trains, LoRA
trains only its factors, LEVI's small model is the CNN with its batch-norm
statistics stored, and class-subset groups are scored on their classes."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.components import Context
from benchmark.data import DatasetInfo, ShiftSplits, Split
from benchmark.store import RunStore
from methods import METHODS
from tests.harness import smoke_config

SIZE = 32


def _splits(seed=0):
  rng = np.random.default_rng(seed)

  def split(n, classes=(0, 1, 2, 3)):
    y = rng.choice(classes, n)
    img = rng.integers(0, 80, (n, SIZE, SIZE, 3))
    for c in range(4):  # class c: a bright quadrant
      r, q = divmod(c, 2)
      img[y == c, r * 16:(r + 1) * 16, q * 16:(q + 1) * 16] += 150
    img = img.astype(np.uint8)
    return Split({"image": img}, {"image": img}, y.astype(np.int32))
  info = DatasetInfo("toy_vision", "classification", 4, {"image": (SIZE, SIZE, 3)},
                     {"image": (SIZE, SIZE, 3)}, modality="image",
                     extra={"ood_class_subsets": {"pair": [0, 3]}})
  return ShiftSplits(info, split(96), split(48), split(48),
                     {"pair": split(48, (0, 3)), "all": split(48)})


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  config = smoke_config("synthetic_spurious", **{
      "backbones.vit_tiny.num_layers": 2, "epochs": 3, "batch_size": 16,
      "eval_batch_size": 64, "lora.rank": 2, "model.adapter_hidden": 16})
  return Context(_splits(), config, "vit_tiny", RunStore(tmp_path_factory.mktemp("wd")))


def check_scores(ctx, method, rec, at_least=None):
  """The record's scores are the accuracies of the stored predictions of the
  method's component on each split (its classes only), not just numbers in
  [0, 100]; ``at_least``: test_id and OOD accuracies it must reach."""
  from benchmark.metrics import score
  assert rec["status"] == "ok", rec
  assert set(rec["scores"]) == {"val", "test_id", "ood/pair", "ood/all"}
  m = METHODS.get(method)
  if getattr(m, "kind", ""):   # one component: its predictions are the method's
    preds = ctx.component(ctx.spec(m.kind, 0)).preds
    labels = {k: s.label for k, s in ctx.splits.eval_splits().items()}
    for k, v in rec["scores"].items():
      assert v == score("classification", preds[k], labels[k], ctx.info.eval_classes(k)), k
      p = np.exp(np.asarray(preds[k], np.float64))
      np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-4)   # log-probabilities
  if at_least is not None:
    low = {k: v for k, v in rec["scores"].items() if k != "val" and v < at_least}
    assert not low, f"{method} should learn the toy task: {rec['scores']}"


# Measured (3 epochs): LEVI's CNN learns the bright-quadrant task (100% ID,
# >= 95% on both OOD groups); the 2-block ViT alone does not move off chance
# in 3 epochs (about 20% ID), so those rows are checked by recomputation only.
LEARNS = {"levi": 90.0, "levi_lora": 90.0}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ft", "lp", "levi", "lora", "levi_lora"])
def test_vision_rows_train_and_score(ctx, method):
  from benchmark import protocol
  rec = protocol.run_method(ctx, METHODS.get(method), 0)
  check_scores(ctx, method, rec, LEARNS.get(method))


def test_lora_trains_only_factors_and_head(ctx):
  res = ctx.component(ctx.spec("lora", 0))
  keys = list(res.params)
  assert keys and all(k.startswith("head/") or k.endswith(("lora_a", "lora_b"))
                      for k in keys), keys
  assert any("attn/query/lora_a" in k for k in keys)
  ft = ctx.component(ctx.spec("ft", 0)).record
  assert res.record["n_trainable"] < ft["n_trainable"] / 5


def test_levi_lora_has_cnn_small_model_and_batch_norm_state(ctx):
  res = ctx.component(ctx.spec("levi_lora", 0))
  trainable = list(res.params)
  assert any(k.startswith("small/convs/3/kernel") for k in trainable)
  assert any(k.startswith("large/") and k.endswith("lora_b") for k in trainable)
  assert not any(k.startswith("large/") and k.endswith("/kernel") and "lora" not in k
                 and not k.startswith("state:") for k in trainable)
  assert sum(k.startswith("state:small/norms/") for k in trainable) == 8
  assert len(res.record["config"]["taps"]) == 2  # one adapting layer per block


def test_class_subset_group_is_scored_on_its_classes(ctx):
  from benchmark.metrics import score
  res = ctx.component(ctx.spec("ft", 0))
  p = res.preds["ood/pair"]
  label = ctx.splits.ood["pair"].label
  assert res.record["scores"]["ood/pair"] == score("classification", p, label, [0, 3])
  assert res.record["scores"]["ood/pair"] >= score("classification", p, label)
