"""Our Flax T5 against Hugging Face's torch ``T5Model`` (t5-small shape, random
weights saved as HF safetensors, since no published checkpoint ships here):
same encoder and decoder hidden states, same taps, same parameter count; and
broken or foreign weight files fail with one-line errors."""
from __future__ import annotations

import re

# HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE and JAX_PLATFORMS: set for the whole
# session by tests/conftest.py, not here (a module setting them changed later tests).

from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.t5 import (T5Backbone, T5Config, load_hf_t5,
                                 relative_position_bucket)

TOL = 2e-5  # measured max |ours - HF|: 4.8e-6 encoder, 7.6e-6 decoder (README)
T5_SMALL_PARAMS = 60_506_624   # HF T5Model("t5-small"), embeddings tied
SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
             num_decoder_layers=6, num_heads=8, relative_attention_num_buckets=32,
             relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
             feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0,
             eos_token_id=1, tie_word_embeddings=True)
TINY = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_heads=4, num_layers=2,
            num_decoder_layers=2)
# Shared jitted calls: one compile each for the module's t5-small model.
_seq = nnx.jit(lambda m, v: m.sequence_outputs(v))
_taps = nnx.jit(lambda m, v: m(v))


def _save_hf(folder: Path, seed: int = 0, **overrides) -> transformers.T5Model:
  torch.manual_seed(seed)
  model = transformers.T5Model(transformers.T5Config(**{**SMALL, **overrides}))
  model = model.to(torch.float32).eval()
  model.save_pretrained(folder, safe_serialization=True)
  return model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
  return tmp_path_factory.mktemp("t5_small_hf")


@pytest.fixture(scope="module")
def hf(hf_dir) -> transformers.T5Model:
  return _save_hf(hf_dir)


@pytest.fixture(scope="module")
def ours(hf, hf_dir) -> T5Backbone:
  model = T5Backbone(T5Config.from_json(hf_dir / "config.json"), rngs=nnx.Rngs(0))
  load_hf_t5(model, hf_dir)
  return model


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  ids = rng.integers(2, SMALL["vocab_size"], size=(2, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  ids[1, 7:] = SMALL["pad_token_id"]
  ids[:, -1] = np.where(mask[:, -1] == 1, 1, ids[:, -1])  # </s> on the full row
  return {"ids": ids, "mask": mask}


def test_config_is_t5_small(hf_dir, hf):
  assert T5Config.from_json(hf_dir) == T5Config.small()


def test_hidden_states_and_taps_match_torch(ours, hf, batch):
  b = batch["ids"].shape[0]
  start = SMALL["decoder_start_token_id"]
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(batch["ids"]).long(),
             attention_mask=torch.from_numpy(batch["mask"]).long(),
             decoder_input_ids=torch.full((b, 1), start, dtype=torch.long),
             output_hidden_states=True)
  enc_hf = [h.numpy() for h in out.encoder_hidden_states]
  dec_hf = [h.numpy() for h in out.decoder_hidden_states]
  view = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  mine = _seq(ours, view)
  enc = [np.asarray(h) for h in mine["encoder"]]
  dec = [np.asarray(h) for h in mine["decoder"]]
  assert len(enc) == len(enc_hf) == 7 and len(dec) == len(dec_hf) == 7
  real = batch["mask"].astype(bool)
  enc_d = [float(np.abs(a[real] - h[real]).max()) for a, h in zip(enc, enc_hf)]
  dec_d = [float(np.abs(a - h).max()) for a, h in zip(dec, dec_hf)]
  scale = [float(np.abs(h[real]).max()) for h in enc_hf]
  print("max |ours - HF| encoder states (embeddings, blocks 1..6):", enc_d)
  print("max |ours - HF| decoder states (embeddings, blocks 1..6):", dec_d)
  print("max |HF| encoder states:", scale)
  assert all(h.shape == (2, 1, 512) for h in dec)
  assert max(enc_d) < TOL, enc_d
  assert max(dec_d) < TOL, dec_d

  taps = [np.asarray(t) for t in _taps(ours, view)]
  assert len(taps) == ours.num_blocks == 12
  m = batch["mask"][..., None].astype(np.float32)
  want = [(h * m).sum(axis=1) / m.sum(axis=1) for h in enc_hf[1:]]
  want += [h[:, 0] for h in dec_hf[1:]]
  for tap, w in zip(taps, want):
    assert tap.shape == (2, ours.feature_dim)
    np.testing.assert_allclose(tap, w, atol=TOL, rtol=0)


def test_parameter_count_is_t5_small(ours, hf):
  torch_total = sum(p.numel() for p in hf.parameters())   # tied: counted once
  assert P.count(P.flat_params(ours)) == torch_total == T5_SMALL_PARAMS


def test_relative_position_buckets_match_torch():
  rel = np.arange(-600, 600)[None, :]
  for bidirectional in (True, False):
    for nb, md in ((32, 128), (32, 64), (64, 256)):
      want = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
          torch.from_numpy(rel), bidirectional=bidirectional, num_buckets=nb,
          max_distance=md).numpy()
      got = relative_position_bucket(rel, bidirectional=bidirectional,
                                     num_buckets=nb, max_distance=md)
      np.testing.assert_array_equal(got, want)


def test_interface_and_block_patterns(ours):
  assert ours.tap_dims == (512,) * 12 and ours.feature_dim == 512
  paths = P.param_paths(ours)
  assert "encoder/blocks/0/self_attn/relative_attention_bias/embedding" in paths
  assert "decoder/blocks/3/cross_attn/q/kernel" in paths
  pats = ours.block_patterns()
  assert len(pats) == 12
  covered = set()
  for i, rx in enumerate(pats):
    stack, j = ("encoder", i) if i < 6 else ("decoder", i - 6)
    hit = {p for p in paths if re.search(rx, p)}
    assert hit and all(p.startswith(f"{stack}/blocks/{j}/") for p in hit)
    # the harness prefixes "^large/": the same sets must come out.
    assert hit == {p for p in paths if re.search(rf"^large/{rx}", f"large/{p}")}
    covered |= hit
  assert covered == {p for p in paths if "/blocks/" in p}
  deep = nnx.eval_shape(lambda: T5Backbone(T5Config(**{**TINY, "num_layers": 11}),
                                           rngs=nnx.Rngs(0)))
  deep_paths = P.param_paths(deep)
  hit1 = {p for p in deep_paths if re.search(deep.block_patterns()[1], p)}
  assert hit1 and all(p.startswith("encoder/blocks/1/") for p in hit1)


def test_taps_ignore_padding(ours, batch):
  """Padded tokens change neither the pooled taps nor the decoder's."""
  view = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  alt = dict(view, ids=view["ids"].at[1, 7:].set(123))
  for a, b in zip(_taps(ours, view), _taps(ours, alt)):
    np.testing.assert_allclose(np.asarray(a)[1], np.asarray(b)[1], atol=1e-5, rtol=0)


# --- errors: every failed load raises before writing, so models are reused ---

@pytest.fixture(scope="module")
def tiny() -> T5Backbone:
  return T5Backbone(T5Config(**TINY), rngs=nnx.Rngs(0))


def test_truncated_file_is_a_user_error(ours, hf_dir, tmp_path):
  bad = tmp_path / "model.safetensors"
  bad.write_bytes((hf_dir / "model.safetensors").read_bytes()[:1000])
  with pytest.raises(UserError) as e:
    load_hf_t5(ours, str(bad))
  assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_other_size_is_a_user_error(ours, tmp_path):
  _save_hf(tmp_path, d_model=256, d_ff=512, num_heads=4, vocab_size=512)
  with pytest.raises(UserError, match="another architecture") as e:
    load_hf_t5(ours, tmp_path)
  assert str(tmp_path / "model.safetensors") in str(e.value)
  assert "\n" not in str(e.value)


def test_missing_file_missing_and_foreign_tensors(tiny, tmp_path):
  from safetensors.numpy import save_file
  with pytest.raises(UserError, match="not found"):
    load_hf_t5(tiny, tmp_path / "nope.safetensors")
  part = tmp_path / "part.safetensors"
  save_file({"shared.weight": np.zeros((64, 16), np.float32)}, str(part))
  with pytest.raises(UserError, match="missing") as e:
    load_hf_t5(tiny, part)
  assert str(part) in str(e.value)
  bert = tmp_path / "bert.safetensors"
  save_file({"embeddings.word_embeddings.weight": np.zeros((64, 16), np.float32)},
            str(bert))
  with pytest.raises(UserError, match="not T5 weights") as e:
    load_hf_t5(tiny, bert)
  assert str(bert) in str(e.value)


@pytest.mark.parametrize("arch,ff", [("T5Model", "gated-gelu"),
                                     ("T5ForConditionalGeneration", "relu")])
def test_v11_and_lm_checkpoints_match_torch(tmp_path, arch, ff):
  """T5 v1.1 (gated-gelu) weights, and the LM-head checkpoints published
  t5-small ships as (``lm_head``, ``*.embed_tokens`` copies), load and match."""
  torch.manual_seed(0)
  hf = getattr(transformers, arch)(transformers.T5Config(
      **{**SMALL, **TINY, "num_decoder_layers": 3, "feed_forward_proj": ff}))
  hf = hf.to(torch.float32).eval()
  hf.save_pretrained(tmp_path, safe_serialization=True)
  weights = str(tmp_path / "model.safetensors")
  if arch != "T5Model":
    # transformers 5 drops tied copies on save; older exports (the hub's
    # t5-small among them) keep them, and a cross-attention bias HF ignores.
    from safetensors.numpy import load_file, save_file
    flat = load_file(weights)
    for k in ("lm_head.weight", "encoder.embed_tokens.weight",
              "decoder.embed_tokens.weight"):
      flat[k] = flat["shared.weight"]
    flat["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = (
        np.ones((32, 4), np.float32))
    save_file(flat, weights)
  cfg = T5Config.from_json(tmp_path)
  assert cfg.num_decoder_layers == 3 and cfg.gated == (ff == "gated-gelu")
  if cfg.gated:
    assert cfg.activation == "gelu_new"
  ours = T5Backbone(cfg, rngs=nnx.Rngs(0))
  load_hf_t5(ours, tmp_path)
  ids = np.array([[5, 9, 3, 1], [7, 1, 0, 0]], np.int32)
  mask = (np.arange(4)[None] < np.array([[4], [2]])).astype(np.int32)
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(ids).long(),
             attention_mask=torch.from_numpy(mask).long(),
             decoder_input_ids=torch.zeros((2, 1), dtype=torch.long),
             output_hidden_states=True)
  run = nnx.jit(lambda m, v: (m.sequence_outputs(v)["decoder"][-1], m(v),
                              m(v, train=True)))
  got, taps, train_taps = run(ours, {"ids": ids, "mask": mask})
  np.testing.assert_allclose(np.asarray(got), out.decoder_hidden_states[-1].numpy(),
                             atol=TOL, rtol=0)
  assert len(taps) == 5
  # No dropout: train=True runs the same network.
  for a, b in zip(taps, train_taps):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  if arch != "T5Model":
    flat["decoder.embed_tokens.weight"] = flat["shared.weight"] + 1.0
    save_file(flat, weights)
    with pytest.raises(UserError, match="untied") as e:
      load_hf_t5(ours, weights)
    assert weights in str(e.value)


def test_bad_feed_forward_is_a_user_error(tmp_path):
  conf = tmp_path / "config.json"
  conf.write_text('{"model_type": "t5", "vocab_size": 64, "d_model": 16, '
                  '"d_kv": 4, "d_ff": 32, "num_layers": 2, "num_heads": 4, '
                  '"feed_forward_proj": "gated-tanh-x"}')
  with pytest.raises(UserError, match="feed_forward_proj") as e:
    T5Config.from_json(conf)
  assert str(conf) in str(e.value) and "\n" not in str(e.value)
  with pytest.raises(UserError, match="feed_forward_proj"):
    T5Config(feed_forward_proj="swiglu-relu")
