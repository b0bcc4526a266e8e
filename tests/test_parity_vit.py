"""ViT parity: our Flax ViT-B/16 against Hugging Face ``transformers``'
PyTorch ``ViTModel`` with the same (random) weights, every block's output;
the big_vision ``.npz`` layouts (AugReg's pre-linen names, big_vision's linen
names) load to the same network; position embeddings resample to other image
sizes; checkpoints that do not fit fail with one line naming the parameter."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.vit import ViT, ViTConfig, load_vit, resample_posemb
from tests.vit_files import augreg_from_ours

TOL = 2e-5  # measured max |ours - HF| over the 13 hidden states: 7.9e-6 (README)
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _hf_vit(tmp_path, hidden=768, layers=12, heads=12, mlp=3072, seed=0):
  torch.manual_seed(seed)
  torch.set_num_threads(2)
  conf = transformers.ViTConfig(hidden_size=hidden, num_hidden_layers=layers,
                                num_attention_heads=heads, intermediate_size=mlp,
                                image_size=224, patch_size=16)
  conf._attn_implementation = "eager"
  model = transformers.ViTModel(conf, add_pooling_layer=False).eval()
  # HF initialises biases and the class token at zero: randomise them too,
  # so the parity covers every parameter's placement.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "cls_token" in name:
        p.normal_(0.0, 0.02)
  out = tmp_path / f"vit-{hidden}"
  model.save_pretrained(out, safe_serialization=True)
  return model, out


@pytest.fixture(scope="module")
def b16(tmp_path_factory):
  return _hf_vit(tmp_path_factory.mktemp("vit"))


def _images(n=2, size=224, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def _ours(folder, **overrides):
  cfg = dataclasses.replace(ViTConfig.from_hf_json(folder / "config.json"), **overrides)
  model = ViT(cfg, rngs=nnx.Rngs(1))
  load_vit(model, folder)
  return model


@pytest.mark.slow
def test_every_block_matches_transformers(b16):
  hf, folder = b16
  x = _images()
  with torch.no_grad():
    ref = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2)),
             output_hidden_states=True)
  ours = _ours(folder)
  states = ours.sequence_outputs({"image": jnp.asarray(x)})
  assert len(states) == len(ref.hidden_states) == 13
  errs = [float(np.max(np.abs(np.asarray(a) - b.numpy())))
          for a, b in zip(states, ref.hidden_states)]
  print("max |ours - HF| per hidden state (embeddings, blocks 1..12):", errs)
  assert max(errs) < TOL, errs
  taps = ours({"image": jnp.asarray(x)})
  assert len(taps) == ours.num_blocks == 12 and ours.tap_dims == (768,) * 12
  assert all(t.shape == (2, 768) and t.dtype == jnp.float32 for t in taps)
  # The last tap is the class token after the final LayerNorm; the others
  # are the class token of each block's output.
  np.testing.assert_allclose(np.asarray(taps[-1]), ref.last_hidden_state[:, 0].numpy(),
                             atol=TOL, rtol=0)
  np.testing.assert_allclose(np.asarray(taps[3]), ref.hidden_states[4][:, 0].numpy(),
                             atol=TOL, rtol=0)


def _to_big_vision(folder, heads=12) -> dict[str, np.ndarray]:
  """The same weights under AugReg's names and shapes (pre-linen Flax names,
  position embeddings with the class token's row, in ``Transformer/``)."""
  from safetensors.numpy import load_file
  sd = load_file(str(folder / "model.safetensors"))
  d = sd["embeddings.cls_token"].shape[-1]
  hd = d // heads
  out = {"embedding/kernel": sd["embeddings.patch_embeddings.projection.weight"]
         .transpose(2, 3, 1, 0),
         "embedding/bias": sd["embeddings.patch_embeddings.projection.bias"],
         "cls": sd["embeddings.cls_token"],
         "Transformer/posembed_input/pos_embedding": sd["embeddings.position_embeddings"],
         "Transformer/encoder_norm/scale": sd["layernorm.weight"],
         "Transformer/encoder_norm/bias": sd["layernorm.bias"],
         "pre_logits/kernel": np.zeros((d, d), np.float32),
         "pre_logits/bias": np.zeros(d, np.float32),
         "head/kernel": np.zeros((d, 10), np.float32), "head/bias": np.zeros(10, np.float32)}
  n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
  for i in range(n):
    e, b = f"encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
    out[b + "LayerNorm_0/scale"] = sd[e + "layernorm_before.weight"]
    out[b + "LayerNorm_0/bias"] = sd[e + "layernorm_before.bias"]
    out[b + "LayerNorm_2/scale"] = sd[e + "layernorm_after.weight"]
    out[b + "LayerNorm_2/bias"] = sd[e + "layernorm_after.bias"]
    out[b + "MlpBlock_3/Dense_0/kernel"] = sd[e + "intermediate.dense.weight"].T
    out[b + "MlpBlock_3/Dense_0/bias"] = sd[e + "intermediate.dense.bias"]
    out[b + "MlpBlock_3/Dense_1/kernel"] = sd[e + "output.dense.weight"].T
    out[b + "MlpBlock_3/Dense_1/bias"] = sd[e + "output.dense.bias"]
    a = b + "MultiHeadDotProductAttention_1/"
    for p in ("query", "key", "value"):
      out[a + f"{p}/kernel"] = sd[e + f"attention.attention.{p}.weight"].T.reshape(d, heads, hd)
      out[a + f"{p}/bias"] = sd[e + f"attention.attention.{p}.bias"].reshape(heads, hd)
    out[a + "out/kernel"] = sd[e + "attention.output.dense.weight"].T.reshape(heads, hd, d)
    out[a + "out/bias"] = sd[e + "attention.output.dense.bias"]
  return out


def _to_linen_names(bv: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """big_vision's own layout: linen names, and position embeddings for the
  patches only (added before the class token, whose row goes into ``cls``)."""
  ren = {"MultiHeadDotProductAttention_1/": "MultiHeadDotProductAttention_0/",
         "LayerNorm_2/": "LayerNorm_1/", "MlpBlock_3/": "MlpBlock_0/"}
  out = {}
  for k, v in bv.items():
    for a, b in ren.items():
      k = k.replace(a, b)
    out[k] = v
  pe = out.pop("Transformer/posembed_input/pos_embedding")
  out["pos_embedding"], out["cls"] = pe[:, 1:], out["cls"] + pe[:, :1]
  return out


def _assert_same_taps(a: ViT, b: ViT, atol: float):
  x = {"image": jnp.asarray(_images(1, seed=1))}
  for i, (ta, tb) in enumerate(zip(a(x), b(x), strict=True)):
    err = float(np.max(np.abs(np.asarray(ta) - np.asarray(tb))))
    assert err < atol, f"tap {i}: max abs error {err}"


@pytest.mark.slow
def test_big_vision_npz_loads_to_the_same_network(b16, tmp_path):
  _, folder = b16
  bv = _to_big_vision(folder)
  np.savez(tmp_path / "ViT-B_16.npz", **bv)
  np.savez(tmp_path / "linen.npz", **_to_linen_names(bv))
  a = _ours(folder)
  cfg = dataclasses.replace(ViTConfig.b16(), layer_norm_eps=a.cfg.layer_norm_eps)
  b = ViT(cfg, rngs=nnx.Rngs(2))
  load_vit(b, tmp_path / "ViT-B_16.npz")
  pa, pb = P.flat_params(a), P.flat_params(b)
  assert set(pa) == set(pb)
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
  _assert_same_taps(a, b, 1e-5)
  c = ViT(cfg, rngs=nnx.Rngs(3))
  load_vit(c, tmp_path / "linen.npz")
  _assert_same_taps(a, c, 1e-5)


def test_checkpoint_into_smaller_images_and_fewer_blocks(b16, capsys):
  _, folder = b16
  small = _ours(folder, image_size=32, num_layers=2)
  taps = small({"image": jnp.asarray(np.zeros((3, 32, 32, 3), np.uint8))})
  assert len(taps) == 2 and all(t.shape == (3, 768) for t in taps)
  assert all(np.isfinite(np.asarray(t)).all() for t in taps)
  err = capsys.readouterr().err
  assert "resampled from a 14x14 to a 2x2" in err and "first 2 blocks of 12" in err
  with pytest.raises(UserError, match="image_size 32"):
    small({"image": jnp.zeros((1, 224, 224, 3))})


def test_resample_keeps_the_class_row_and_the_corner_patches():
  # big_vision zooms with scipy's order-1 spline: corner patches map to corners.
  pos = np.random.default_rng(0).normal(size=(1, 1 + 14 * 14, 4)).astype(np.float32)
  out = resample_posemb(pos, 1 + 24 * 24)
  assert out.shape == (1, 1 + 24 * 24, 4)
  np.testing.assert_array_equal(out[:, 0], pos[:, 0])
  grid, new = pos[0, 1:].reshape(14, 14, 4), out[0, 1:].reshape(24, 24, 4)
  for (i, j), (k, m) in {(0, 0): (0, 0), (0, 13): (0, 23), (13, 0): (23, 0),
                         (13, 13): (23, 23)}.items():
    np.testing.assert_allclose(new[k, m], grid[i, j], atol=1e-6)
  t = 13 / 23  # output row 1 sits at input row 13/23 (corners aligned)
  np.testing.assert_allclose(new[1, 0], (1 - t) * grid[0, 0] + t * grid[1, 0], atol=1e-5)
  # Down to 2x2 (a 32-pixel model): exactly the four corner patches.
  small = resample_posemb(pos, 1 + 2 * 2)[0, 1:].reshape(2, 2, 4)
  np.testing.assert_allclose(small, grid[::13, ::13], atol=1e-6)


def test_checkpoint_of_another_width_names_the_parameter(tmp_path):
  _, folder = _hf_vit(tmp_path, hidden=192, layers=1, heads=3, mlp=768)
  model = ViT(dataclasses.replace(ViTConfig.b16(), num_layers=1), rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match=r"parameter blocks/0/attn/key/bias has shape "
                                       r"\(192,\), the model expects \(768,\)"):
    load_vit(model, folder)


def test_unusable_checkpoints_fail_on_one_line(tmp_path):
  model = ViT(dataclasses.replace(ViTConfig.ti16(), num_layers=1, image_size=32),
              rngs=nnx.Rngs(0))
  bv = augreg_from_ours(model)
  np.savez(tmp_path / "whole.npz", **bv)
  again = ViT(model.cfg, rngs=nnx.Rngs(5))
  load_vit(again, tmp_path / "whole.npz")  # the round trip loads
  for k, v in P.flat_params(model).items():
    np.testing.assert_array_equal(P.flat_params(again)[k], v, err_msg=k)
  np.savez(tmp_path / "partial.npz",
           **{k: v for k, v in bv.items() if k != "Transformer/encoder_norm/bias"})
  with pytest.raises(UserError, match=r"missing \(e\.g\. \['norm/bias'\]\)") as e:
    load_vit(model, tmp_path / "partial.npz")
  assert "\n" not in str(e.value)
  np.savez(tmp_path / "gap.npz", **{k: v for k, v in bv.items() if k != "cls"})
  with pytest.raises(UserError, match="no class token"):
    load_vit(model, tmp_path / "gap.npz")
  (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02torch pickle")
  with pytest.raises(UserError, match="unknown checkpoint format"):
    load_vit(model, tmp_path / "pytorch_model.bin")
  with pytest.raises(UserError, match="not found"):
    load_vit(model, tmp_path / "missing.npz")
  with pytest.raises(UserError, match="model.safetensors"):
    load_vit(model, tmp_path / "nowhere")
