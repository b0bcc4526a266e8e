"""Our Flax BERT against Hugging Face's torch ``BertModel`` on the shipped
all-MiniLM-L6-v2 weights: same tokens, same hidden states, same pooled taps,
same parameter count; and broken weight files fail with one-line errors."""
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
from benchmark.models.bert import (BertConfig, BertEncoder, Tokenizer,
                                   load_hf_bert, minilm_dir)

MOVIELENS = ("When the user id is 138, the user occupation is doctor, the user "
             "zipcode is 53211, the movie title is One Flew Over the Cuckoo's Nest "
             "(1975), and the movie id is 357, what can be the user rating on this "
             "movie?:")
BATCH = ["A cat sat on the mat.",
         "Transformers read whole sentences at once, so word order is learned "
         "from position embeddings.",
         MOVIELENS]
MAX_LEN = 32
TOL = 1e-5  # measured max |ours - HF|: 3.0e-6 (README quotes both)
# HF BertModel for MiniLM-L6-H384: 22,713,216 with the pooler; we have none.
POOLER = 384 * 384 + 384
MINILM_PARAMS = 22_565_376


@pytest.fixture(scope="module")
def mdir() -> str:
  return minilm_dir()


@pytest.fixture(scope="module")
def ours(mdir) -> BertEncoder:
  model = BertEncoder(BertConfig.from_json(mdir), rngs=nnx.Rngs(0))
  load_hf_bert(model, mdir)
  return model


@pytest.fixture(scope="module")
def hf(mdir):
  model = transformers.BertModel.from_pretrained(
      mdir, dtype=torch.float32, local_files_only=True)
  return model.eval()


@pytest.fixture(scope="module")
def batch(mdir) -> dict[str, np.ndarray]:
  return Tokenizer(mdir).encode_batch(BATCH, MAX_LEN)


def test_batch_has_padding_and_truncation(batch):
  lengths = batch["mask"].sum(axis=1)
  assert lengths[0] < lengths[1] <= MAX_LEN and lengths[2] == MAX_LEN
  assert batch["ids"][2, -1] == 102                 # [SEP] kept after truncation
  assert (batch["ids"][batch["mask"] == 0] == 0).all()


def test_hidden_states_and_taps_match_torch(ours, hf, batch):
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(batch["ids"]).long(),
             attention_mask=torch.from_numpy(batch["mask"]).long(),
             token_type_ids=torch.zeros(batch["ids"].shape, dtype=torch.long),
             output_hidden_states=True)
  theirs = [h.numpy() for h in out.hidden_states]
  view = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  mine = [np.asarray(h) for h in nnx.jit(lambda m, v: m.sequence_outputs(v))(ours, view)]
  assert len(mine) == len(theirs) == 7
  real = batch["mask"].astype(bool)
  diffs = [float(np.abs(a[real] - b[real]).max()) for a, b in zip(mine, theirs)]
  print("max |ours - HF| per hidden state (embeddings, layers 1..6):", diffs)
  assert max(diffs) < TOL, diffs

  taps = [np.asarray(t) for t in nnx.jit(lambda m, v: m(v))(ours, view)]
  assert len(taps) == ours.num_blocks == 6
  m = batch["mask"][..., None].astype(np.float32)
  for tap, h in zip(taps, theirs[1:]):
    pooled = (h * m).sum(axis=1) / np.clip(m.sum(axis=1), 1.0, None)
    assert tap.shape == (3, ours.feature_dim)
    np.testing.assert_allclose(tap, pooled, atol=TOL, rtol=0)


def test_tokenizer_ids_match_autotokenizer(mdir):
  texts = [MOVIELENS, "Hello, World!", "naïve café — über 3.14", "",
           " ".join(["word"] * 40)]
  ref = transformers.AutoTokenizer.from_pretrained(mdir, local_files_only=True)
  tok = Tokenizer(mdir)
  for max_len in (16, 64):
    want = ref(texts, padding="max_length", truncation=True, max_length=max_len)
    got = tok.encode_batch(texts, max_len)
    assert got["ids"].dtype == np.int32 and got["ids"].shape == (len(texts), max_len)
    np.testing.assert_array_equal(got["ids"], np.asarray(want["input_ids"]))
    np.testing.assert_array_equal(got["mask"], np.asarray(want["attention_mask"]))


def test_parameter_count_is_minilm_without_pooler(ours, hf):
  torch_total = sum(p.numel() for p in hf.parameters())
  torch_pooler = sum(p.numel() for p in hf.pooler.parameters())
  assert torch_pooler == POOLER
  assert P.count(P.flat_params(ours)) == torch_total - torch_pooler == MINILM_PARAMS
  assert abs(torch_total / 1e6 - 22.7) < 0.05        # the published 22.7M


def test_interface_and_block_patterns(ours):
  assert ours.tap_dims == (384,) * 6 and ours.feature_dim == 384
  paths = P.param_paths(ours)
  assert "layers/0/attention/query/kernel" in paths
  covered = set()
  for i, rx in enumerate(ours.block_patterns()):
    hit = {p for p in paths if re.search(rx, p)}
    assert hit and all(p.startswith(f"layers/{i}/") for p in hit)
    covered |= hit
  assert covered == {p for p in paths if p.startswith("layers/")}


def _small_model() -> BertEncoder:
  return BertEncoder(BertConfig.from_json(minilm_dir()), rngs=nnx.Rngs(0))


def test_truncated_file_is_a_user_error(mdir, tmp_path):
  bad = tmp_path / "model.safetensors"
  bad.write_bytes((Path(mdir) / "model.safetensors").read_bytes()[:1000])
  with pytest.raises(UserError) as e:
    load_hf_bert(_small_model(), str(bad))
  assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_wrong_shape_is_a_user_error(tmp_path):
  from safetensors.numpy import load_file, save_file
  flat = load_file(str(Path(minilm_dir()) / "model.safetensors"))
  flat["encoder.layer.2.intermediate.dense.weight"] = np.zeros((8, 384), np.float32)
  bad = tmp_path / "model.safetensors"
  save_file(flat, str(bad))
  with pytest.raises(UserError, match="intermediate") as e:
    load_hf_bert(_small_model(), str(tmp_path))
  assert str(bad) in str(e.value)


def test_missing_file_and_missing_tensors(tmp_path):
  from safetensors.numpy import save_file
  with pytest.raises(UserError, match="not found"):
    load_hf_bert(_small_model(), str(tmp_path / "nope.safetensors"))
  other = tmp_path / "other.safetensors"
  save_file({"embeddings.word_embeddings.weight": np.zeros((30522, 384), np.float32)},
            str(other))
  with pytest.raises(UserError, match="missing") as e:
    load_hf_bert(_small_model(), str(other))
  assert str(other) in str(e.value)
