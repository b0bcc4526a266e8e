"""LoRA on attention projections and the vision small model (4-layer CNN)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmark import trainer as T
from benchmark.data import DatasetInfo, ShiftSplits, Split
from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.bert import BertConfig, BertEncoder
from benchmark.models.lora import LORA_RULE, LoRALinear, add_lora
from benchmark.models.small import SmallCNN
from benchmark.models.task import LayerwiseEnsemble


def _tiny_bert():
  cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                   intermediate_size=32, max_position=16)
  return BertEncoder(cfg, rngs=nnx.Rngs(0))


def _view():
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (3, 8)), jnp.int32)
  return {"ids": ids, "mask": jnp.ones_like(ids)}


def test_lora_wraps_only_attention_projections_and_starts_as_the_base_model():
  model = _tiny_bert()
  before = model(_view())
  names_before = set(P.flat_params(model))
  n = add_lora(model, r"attention/(query|key|value|output)$", rank=4, alpha=8.0,
               rngs=nnx.Rngs(1))
  assert n == 2 * 4
  flat = P.flat_params(model)
  added = set(flat) - names_before
  assert names_before <= set(flat)  # pre-trained weights keep their names
  assert added == {f"layers/{i}/attention/{p}/lora_{ab}" for i in range(2)
                   for p in ("query", "key", "value", "output") for ab in "ab"}
  assert flat["layers/0/attention/query/lora_a"].shape == (16, 4)
  assert flat["layers/0/attention/query/lora_b"].shape == (4, 16)
  # B starts at zero: the adapted model is the pre-trained one until trained
  # (up to rounding: the plain model runs query/key/value as one matmul,
  # LoRA-wrapped layers one by one)
  after = model(_view())
  for a, b in zip(before, after):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert isinstance(model.layers[0].attention.query, LoRALinear)
  assert not isinstance(model.layers[0].intermediate, LoRALinear)


def test_lora_update_is_the_low_rank_product():
  lin = nnx.Linear(6, 5, rngs=nnx.Rngs(0))
  lora = LoRALinear(lin, rank=2, alpha=4.0, rngs=nnx.Rngs(1))
  lora.lora_b[...] = jnp.ones((2, 5))
  x = jnp.ones((3, 6))
  want = x @ lin.kernel[...] + lin.bias[...] + (x @ lora.lora_a[...] @ lora.lora_b[...]) * 2.0
  np.testing.assert_allclose(np.asarray(lora(x)), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_lora_without_matching_layers_is_a_user_error():
  with pytest.raises(UserError, match="no linear layer"):
    add_lora(_tiny_bert(), r"attn/(q|k)$", 4, 4.0, nnx.Rngs(0))
  with pytest.raises(UserError, match="positive rank"):
    add_lora(_tiny_bert(), r"query$", 0, 4.0, nnx.Rngs(0))


def test_lora_rules_train_only_the_factors():
  model = _tiny_bert()
  add_lora(model, r"attention/(query|key|value|output)$", 2, 2.0, nnx.Rngs(1))
  match = P.rule_matcher([(LORA_RULE, True), (r".*", False)])
  trainable = [k for k in P.flat_params(model) if match(k)]
  assert trainable and all(k.endswith(("lora_a", "lora_b")) for k in trainable)


def test_cnn_shapes_and_batch_norm_state():
  cnn = SmallCNN({"image": (32, 32, 3)}, rngs=nnx.Rngs(0))
  assert cnn.out_dim == 2 * 2 * 64  # four 2x2 poolings of 32 pixels, 64 features
  x = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)),
                            jnp.uint8)}
  assert cnn(x, train=False).shape == (4, 256)
  stats = nnx.state(cnn, nnx.BatchStat)
  assert len(P.flat_state(stats)) == 8  # mean and var of four batch norms
  kernels = [k for k in P.flat_params(cnn) if k.endswith("kernel")]
  assert [P.flat_params(cnn)[k].shape[-1] for k in sorted(kernels)] == [32, 64, 64, 64]
  with pytest.raises(ValueError, match="too small"):
    SmallCNN({"image": (8, 8, 3)}, rngs=nnx.Rngs(0))


def _image_splits(n=64, size=16, seed=0):
  rng = np.random.default_rng(seed)

  def split(m):
    y = rng.integers(0, 2, m)
    img = rng.integers(0, 60, (m, size, size, 3))
    img[y == 1, : size // 2] += 150  # class 1: a bright upper half
    img = img.astype(np.uint8)
    return Split({"image": img}, {"image": img}, y.astype(np.int32))
  info = DatasetInfo("toy_images", "classification", 2, {"image": (size, size, 3)},
                     {"image": (size, size, 3)}, modality="image")
  return ShiftSplits(info, split(n), split(32), split(32), {"g": split(32)})


def test_cnn_trains_with_batch_norm_statistics_in_the_saved_state():
  splits = _image_splits()
  model = LayerwiseEnsemble(None, SmallCNN({"image": (16, 16, 3)}, rngs=nnx.Rngs(0)),
                            None, 1, 8, 2, rngs=nnx.Rngs(0))
  job = T.TrainJob(model=model, rules=[(r".*", True)], task="classification", lr=3e-3,
                   epochs=4, batch_size=16)
  r = T.train(job, splits)
  means = [k for k in r.state if k.endswith("/mean")]
  assert len(means) == 4
  assert all(np.abs(r.state[k]).sum() > 0 for k in means)  # running means moved
  assert not any(k.endswith("/mean") for k in r.trainable)  # statistics are not params
  acc = np.mean(np.argmax(r.preds["test_id"], -1) == splits.test_id.label)
  assert acc >= 0.9, acc


def test_class_subset_scoring_masks_the_other_logits():
  from benchmark.metrics import score
  logp = np.log(np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4]]))
  label = np.array([1, 2])
  assert score("classification", logp, label) == 0.0
  assert score("classification", logp, label, classes=np.array([1, 2])) == 100.0
  info = DatasetInfo("x", "classification", 3, extra={"ood_class_subsets": {"a": [1, 2]}})
  assert info.eval_classes("ood/a").tolist() == [1, 2]
  assert info.eval_classes("ood/b") is None and info.eval_classes("test_id") is None

