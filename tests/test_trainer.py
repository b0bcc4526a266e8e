"""The training loop: freezing, LEVI's loss and prediction, caching of frozen
encodings, divergence, and the same metrics on 1 and 4 devices."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from benchmark import trainer as T
from benchmark.models import params as P
from methods import METHODS
from benchmark import protocol
from tests.harness import smoke_context

ROOT = Path(__file__).resolve().parents[1]


def test_head_losses_weights_and_prediction_mean():
  out = jnp.array([[[1.0], [2.0]], [[3.0], [6.0]]])  # 2 heads, batch 2
  label = jnp.array([1.0, 2.0])
  per_head = T.head_losses("regression", out, label)
  np.testing.assert_allclose(per_head, [0.0, (4.0 + 16.0) / 2])
  np.testing.assert_allclose(T.combine_heads("regression", out), [2.0, 4.0])
  logits = jnp.array([[[10.0, 0.0]], [[0.0, 10.0]]])  # heads disagree
  logp = T.combine_heads("classification", logits)
  np.testing.assert_allclose(np.exp(logp), [[0.5, 0.5]], atol=1e-4)


def _component(ctx, kind, seed=0):
  return ctx.component(ctx.spec(kind, seed))


def test_frozen_parts_do_not_change(tmp_path):
  ctx = smoke_context(tmp_path)
  pre = ctx.pretrained_large()
  lp = _component(ctx, "lp")
  assert set(lp.params) == {"head/bias", "head/kernel"}
  ht = _component(ctx, "ht")
  # HT on a 3-block MLP: blocks 1 and 2 (the top half) and the head train.
  assert any(k.startswith("large/blocks/1/") for k in ht.params)
  assert not any(k.startswith("large/blocks/0/") or k.startswith("large/embed") for k in ht.params)
  lev = _component(ctx, "levi_frozen")
  assert not any(k.startswith("large/") for k in lev.params)
  assert any(k.startswith("small/") for k in lev.params)
  assert lp.record["n_trainable"] < ht.record["n_trainable"] < ht.record["n_params"]
  # The pre-trained weights themselves are what a frozen model uses.
  full = _component(ctx, "ft")
  changed = [k for k in pre if not np.allclose(pre[k], full.params["large/" + k])]
  assert changed, "FT should move the pre-trained weights"


def test_frozen_encodings_computed_once(tmp_path):
  ctx = smoke_context(tmp_path)
  _component(ctx, "lp", 0)
  misses = ctx.feature_cache.misses
  _component(ctx, "lp", 1)
  assert ctx.feature_cache.misses == misses  # seed 1 reuses seed 0's encodings
  assert ctx.feature_cache.hits > 0


def test_levi_loss_weights_change_training(tmp_path):
  a = _component(smoke_context(tmp_path / "a"), "levi_light")
  b = _component(smoke_context(tmp_path / "b", **{"levi.loss_weights": "1,0,0"}), "levi_light")
  assert a.spec.key != b.spec.key
  assert a.record["loss_curve"] != b.record["loss_curve"]


def test_divergence_is_recorded_and_sweep_goes_on(tmp_path):
  ctx = smoke_context(tmp_path)
  # A NaN input reaches the loss in the first epoch; only FS sees these arrays
  # this way (FT would too, but it is asked for after the copy is restored).
  clean = ctx.splits.train.large["num"].copy()
  ctx.splits.train.large["num"][5, 0] = np.nan
  rec = protocol.run_method(ctx, METHODS.get("fs"), 0)
  assert rec["status"] == "failed" and "fs" in rec["reason"]
  comp = ctx.store.read(ctx.store.component_path("fs", ctx.spec("fs", 0).key))
  assert comp["status"] == "failed" and comp["failed_step"] >= 0
  ctx.splits.train.large["num"][:] = clean
  ok = protocol.run_method(ctx, METHODS.get("ft"), 0)
  assert ok["status"] == "ok"


SCRIPT = r"""
import json, sys
sys.path.insert(0, %(root)r)
import jax
from tests.harness import smoke_context
ctx = smoke_context(%(workdir)r)
res = ctx.component(ctx.spec("levi_light", 0))
print(json.dumps({"devices": jax.device_count(), "scores": res.record["scores"],
                  "loss": res.record["loss_curve"], "val": res.record["val_curve"]}))
"""


def _run_on(devices: int, workdir: Path) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT % {"root": str(ROOT), "workdir": str(workdir)}],
                       env=env, capture_output=True, text=True, cwd=ROOT, check=True,
                       timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_four_device_mesh_matches_one_device(tmp_path):
  one = _run_on(1, tmp_path / "one")
  four = _run_on(4, tmp_path / "four")
  assert one["devices"] == 1 and four["devices"] == 4
  np.testing.assert_allclose(four["loss"], one["loss"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(four["val"], one["val"], rtol=0, atol=1e-5)
  for split in one["scores"]:
    assert abs(four["scores"][split] - one["scores"][split]) <= 1e-5, split


@pytest.mark.slow
def test_length_bucketing_changes_no_output():
  """Eval batches go in order of length and are cut to their longest
  sequence: the outputs, in input order, equal the full-width forward."""
  from flax import nnx
  from benchmark.models.bert import BertConfig, BertEncoder
  cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                   intermediate_size=32, max_position=40)
  enc = BertEncoder(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  n, t = 37, 40
  lengths = rng.integers(3, 30, size=n)
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
  ids = (rng.integers(1, 50, size=(n, t)) * mask).astype(np.int32)
  view = {"ids": ids, "mask": mask}
  full = [np.asarray(x) for x in enc(view, train=False)]
  graph, state = nnx.split(enc)
  fn = lambda b: tuple(nnx.merge(graph, state)(b, train=False))
  shapes = []
  def spy(b):
    shapes.append(b["ids"].shape)
    return fn(b)
  got = T._map_batches(spy, view, n, 8)
  widths = {s[1] for s in shapes}
  assert widths <= {8, 16, 24, 32} and len(widths) > 1, shapes  # cut, never 40 wide
  for a, b in zip(full, got):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # The one-shot training cut keeps every token.
  cut = T.trim_tokens({"large": view, "label": np.zeros(n)})
  assert cut["large"]["ids"].shape[1] == 32 and cut["large"]["mask"].sum() == mask.sum()
