"""ViT parity: our Flax ViT-B/16 against Hugging Face ``transformers``'
PyTorch ``ViTModel`` with the same (random) weights, every block's output;
the big_vision ``.npz`` layout loads to the same network."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.vit import ViT, ViTConfig, load_vit

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


def test_every_block_matches_transformers(b16):
  hf, folder = b16
  x = _images()
  with torch.no_grad():
    ref = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2)),
             output_hidden_states=True)
  ours = _ours(folder)
  states = ours.sequence_outputs({"image": jnp.asarray(x)})
  assert len(states) == len(ref.hidden_states) == 13
  for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
    err = float(np.max(np.abs(np.asarray(a) - b.numpy())))
    assert err < 1e-4, f"hidden state {i}: max abs error {err}"
  taps = ours({"image": jnp.asarray(x)})
  assert len(taps) == 12 and all(t.shape == (2, 768) for t in taps)
  np.testing.assert_allclose(np.asarray(taps[-1]), ref.last_hidden_state[:, 0].numpy(),
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(taps[3]), ref.hidden_states[4][:, 0].numpy(),
                             atol=1e-4)


def _to_big_vision(folder, heads=12) -> dict[str, np.ndarray]:
  """The same weights under big_vision's names and shapes."""
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


def test_big_vision_npz_loads_to_the_same_network(b16, tmp_path):
  _, folder = b16
  npz = tmp_path / "ViT-B_16.npz"
  np.savez(npz, **_to_big_vision(folder))
  a = _ours(folder)
  b = ViT(dataclasses.replace(ViTConfig.b16(), layer_norm_eps=a.cfg.layer_norm_eps),
          rngs=nnx.Rngs(2))
  load_vit(b, npz)
  pa, pb = P.flat_params(a), P.flat_params(b)
  assert set(pa) == set(pb)
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
  x = {"image": jnp.asarray(_images(1))}
  np.testing.assert_allclose(np.asarray(a(x)[-1]), np.asarray(b(x)[-1]), atol=1e-6)


def test_checkpoint_into_smaller_images_and_fewer_blocks(b16, capsys):
  _, folder = b16
  small = _ours(folder, image_size=32, num_layers=2)
  taps = small({"image": jnp.asarray(np.zeros((3, 32, 32, 3), np.uint8))})
  assert len(taps) == 2 and all(t.shape == (3, 768) for t in taps)
  assert all(np.isfinite(np.asarray(t)).all() for t in taps)
  err = capsys.readouterr().err
  assert "resampled from a 14x14 to a 2x2" in err and "first 2 blocks of 12" in err


def test_checkpoint_of_another_width_names_the_parameter(tmp_path):
  _, folder = _hf_vit(tmp_path, hidden=192, layers=1, heads=3, mlp=768)
  model = ViT(dataclasses.replace(ViTConfig.b16(), num_layers=1), rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match=r"parameter \S+ has shape .* expects"):
    load_vit(model, folder)
  with pytest.raises(UserError, match="not found"):
    load_vit(model, tmp_path / "missing.npz")
  with pytest.raises(UserError, match="model.safetensors"):
    load_vit(model, tmp_path / "nowhere")
