"""``fashion_mnist_quality``: IDX files (the exact on-disk format, written
here), the seeded splits, the degradations, and bad input."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from benchmark.errors import DataError, UserError
from datasets import DATASETS
from datasets import fashion_mnist as F
from tests.harness import smoke_config


def write_idx(path, arr: np.ndarray, gz: bool = True) -> None:
  head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
  data = head + arr.astype(np.uint8).tobytes()
  if gz:
    with gzip.open(str(path) + ".gz", "wb") as f:
      f.write(data)
  else:
    path.write_bytes(data)


def write_fixture(folder, n_train=300, n_test=200, seed=0) -> None:
  """Fashion-MNIST-format files; class c is a bright band at rows 2c..2c+5."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for part, n in (("train", n_train), ("t10k", n_test)):
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 40, (n, 28, 28))
    for i, c in enumerate(y):
      x[i, 2 * c:2 * c + 6] += 200
    write_idx(folder / f"{part}-images-idx3-ubyte", np.clip(x, 0, 255))
    write_idx(folder / f"{part}-labels-idx1-ubyte", y)


def _load(data_dir, **over):
  cfg = smoke_config(F.NAME, **{f"data.{F.NAME}.val_size": 50, **over})
  return DATASETS.get(F.NAME).load(cfg, str(data_dir))


def test_splits_from_idx_files(tmp_path):
  write_fixture(tmp_path)
  s = _load(tmp_path, **{f"data.{F.NAME}.max_train": 0, f"data.{F.NAME}.max_test": 0,
                         f"data.{F.NAME}.max_eval": 0, f"data.{F.NAME}.max_val": 0})
  assert (len(s.train), len(s.val), len(s.test_id)) == (250, 50, 100)
  assert set(s.ood) == {"lowres", "blur", "noise"}
  assert all(len(g) == 100 for g in s.ood.values())
  img = s.train.large["image"]
  assert img.shape == (250, 32, 32, 3) and img.dtype == np.uint8
  assert s.train.small["image"] is img  # one array feeds both views
  assert (img[..., 0] == img[..., 2]).all()  # grey repeated to RGB
  # every OOD group holds the same held-out images (same labels), degraded
  labels = {g: v.label.tolist() for g, v in s.ood.items()}
  assert labels["lowres"] == labels["blur"] == labels["noise"]
  assert not np.array_equal(s.ood["blur"].large["image"], s.ood["noise"].large["image"])
  assert s.info.num_classes == 10 and s.info.modality == "image"
  again = _load(tmp_path)
  other = _load(tmp_path, **{f"data.{F.NAME}.seed": 1})
  assert np.array_equal(_load(tmp_path).train.label, again.train.label)
  assert not np.array_equal(other.train.label, again.train.label)


def test_degradations():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)
  lo = F.lowres(x)
  assert lo.shape == x.shape and lo.dtype == np.uint8
  # 4x4 block structure survives as smooth ramps: far less high-frequency energy
  hf = lambda a: np.abs(np.diff(a.astype(float), axis=2)).mean()
  assert hf(lo) < 0.5 * hf(x)
  bl = F.gaussian_blur(x, 1.5)
  assert hf(bl) < 0.5 * hf(x)
  flat = np.full((2, 28, 28), 100, np.uint8)
  np.testing.assert_array_equal(F.gaussian_blur(flat, 1.5), flat)  # blur keeps flat images
  np.testing.assert_array_equal(F.lowres(flat), flat)
  n1, n2 = F.add_noise(flat, 50.0, 3), F.add_noise(flat, 50.0, 3)
  np.testing.assert_array_equal(n1, n2)  # seeded
  assert 40 < n1.astype(float).std() < 60


def test_missing_and_truncated_files(tmp_path):
  with pytest.raises(UserError, match=r"lacks the Fashion-MNIST IDX files.*dataset-fashion-mnist"):
    _load(tmp_path)
  write_fixture(tmp_path)
  p = tmp_path / "t10k-images-idx3-ubyte.gz"
  raw = gzip.decompress(p.read_bytes())
  p.write_bytes(gzip.compress(raw[:-100]))
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*truncated"):
    _load(tmp_path)


def test_unknown_shift_is_a_user_error(tmp_path):
  write_fixture(tmp_path)
  with pytest.raises(UserError, match="shifts"):
    _load(tmp_path, **{f"data.{F.NAME}.shifts": "lowres,fog"})


def test_rotation_aux_task_turns_the_id_images(tmp_path, monkeypatch):
  write_fixture(tmp_path)
  monkeypatch.setattr(F, "AUX_MAX_TRAIN", 100)
  s = _load(tmp_path, **{f"data.{F.NAME}.max_train": 0, f"data.{F.NAME}.max_val": 0})
  rot = s.aux["rotation"]
  assert (rot.num_classes, len(rot.train), len(rot.val)) == (4, 100, len(s.val))
  assert set(rot.val.label.tolist()) == {0, 1, 2, 3}
  # Turned back, each val image is the ID val image (resizing commutes with
  # quarter turns up to rounding).
  for i, k in enumerate(rot.val.label[:20]):
    back = np.rot90(rot.val.large["image"][i], -int(k)).astype(int)
    assert np.abs(back - s.val.large["image"][i].astype(int)).max() <= 1, i
