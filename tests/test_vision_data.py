"""The vision benchmarks read through TFDS: ``retinopathy_quality`` and
``imagenet_sketch`` on tiny prepared TFDS data dirs written by TFDS's own
builders (tools/vision_fixture.py): splits by the paper's rules, seeded and
nested samples, the decoded-image cache (read without TensorFlow), and missing
data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import DataError, UserError
from datasets import DATASETS
from datasets import vision as V
from tests.harness import smoke_config
from tools import vision_fixture as F

REPO = Path(__file__).resolve().parents[1]
RET, IMN = V.RETINOPATHY, V.IMAGENET


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("vision_tfds")
  F.write(out)
  return out


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
  d = tmp_path / "cache"
  monkeypatch.setenv("LEVI_CACHE", str(d))
  return d


def load(name, data_dir, **kw):
  cfg = smoke_config(name, **{f"data.{name}.{k}": v for k, v in kw.items()})
  return DATASETS.get(name).load(cfg, None if data_dir is None else str(data_dir))


def split_ids(cache: Path, name: str) -> dict[str, list[str]]:
  """The example ids of every split of the latest load of ``name``, read off
  the cache's manifest."""
  manifests = sorted((cache / "vision" / "manifests").glob(f"{name}-*.json"),
                     key=lambda p: p.stat().st_mtime_ns)
  m = json.loads(manifests[-1].read_text())
  return {k: json.loads((cache / "vision" / v["key"] / f"{v['split']}.ids.json").read_text())
          for k, v in m["splits"].items()}


def all_splits(s):
  return {"train": s.train, "val": s.val, "test_id": s.test_id,
          **{f"ood/{g}": x for g, x in s.ood.items()}}


def check_views(s, size, n_classes):
  for name, sp in all_splits(s).items():
    img = sp.large["image"]
    assert img.shape == (len(sp), size, size, 3) and img.dtype == np.uint8, name
    assert sp.small["image"] is img, name
    assert sp.label.dtype == np.int32 and 0 <= sp.label.min() and sp.label.max() < n_classes
  assert s.info.modality == "image" and s.info.num_classes == n_classes
  assert s.info.large_spec == s.info.small_spec == {"image": (size, size, 3)}
  assert s.source_key


def test_retinopathy_splits_by_original_resolution(data_dir, cache):
  s = load(RET, data_dir)
  check_views(s, 32, 5)
  assert list(s.ood) == ["lowres"]
  per = F.RETINO_SPLITS   # per class; half of them high-resolution
  n = {k: 5 * v // 2 for k, v in per.items()}
  assert s.info.extra["counts"]["train"] == {"high": n["train"], "low": n["train"],
                                             "unlabelled": 0}
  # smoke caps 64 / 32 / 32 / 32
  assert (len(s.train), len(s.val), len(s.test_id), len(s.ood["lowres"])) == (
      min(64, n["train"]), min(32, n["validation"]), min(32, n["test"]), min(32, n["test"]))
  assert set(s.train.label.tolist()) == set(range(5))
  ids = split_ids(cache, RET)
  for name in ("train", "val", "test_id"):
    assert all(F.retino_is_high(i) for i in ids[name]), name
  assert not any(F.retino_is_high(i) for i in ids["ood/lowres"])
  assert not set(ids["test_id"]) & set(ids["ood/lowres"])
  # Images are learnable: class-mean colours differ.
  means = [s.train.large["image"][s.train.label == c].mean((0, 1, 2)) for c in range(5)]
  assert min(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1:]) > 5


def test_resolution_threshold(data_dir):
  # 300x200 = 0.06 MP and 2600x1800 = 4.68 MP: both below 5 MP -> no ID data.
  with pytest.raises(DataError, match="lowres_max_megapixels"):
    load(RET, data_dir, lowres_max_megapixels=5.0)
  with pytest.raises(DataError, match="lowres"):
    load(RET, data_dir, lowres_max_megapixels=0.05)
  s = load(RET, data_dir, lowres_max_megapixels=0.1)
  assert s.info.extra["counts"]["test"]["low"] == 5 * F.RETINO_SPLITS["test"] // 2


def test_imagenet_groups_and_class_subsets(data_dir, cache):
  s = load(IMN, data_dir)
  check_views(s, 32, 1000)
  assert list(s.ood) == ["a", "r", "v2"]
  subsets = s.info.extra["ood_class_subsets"]
  assert subsets == {g: sorted(F.SUBSETS[f"imagenet_{g}"]) for g in ("a", "r")}
  for g in ("a", "r"):
    assert set(s.ood[g].label.tolist()) <= set(subsets[g])
    np.testing.assert_array_equal(s.info.eval_classes(f"ood/{g}"), subsets[g])
  assert s.info.eval_classes("ood/v2") is None
  assert set(s.ood["v2"].label.tolist()) == set(F.IMAGENET_CLASSES)
  per = F.IMAGENET_PER_CLASS
  k = len(F.IMAGENET_CLASSES)
  assert (len(s.train), len(s.val), len(s.test_id)) == (64, 3 * k, 3 * k)
  assert [len(s.ood[g]) for g in ("a", "r", "v2")] == [
      min(32, 4 * per["imagenet_a"]), min(32, 4 * per["imagenet_r"]),
      min(32, k * per["imagenet_v2"])]


def test_imagenet_stratified_80_10_10(data_dir, cache):
  s = load(IMN, data_dir, max_train=0, max_val=0, max_test=0, max_eval=0)
  per = F.IMAGENET_PER_CLASS["imagenet_sketch"]
  for sp, n in ((s.train, per * 8 // 10), (s.val, per // 10), (s.test_id, per // 10)):
    assert np.bincount(sp.label, minlength=1000)[list(F.IMAGENET_CLASSES)].tolist() == (
        [n] * len(F.IMAGENET_CLASSES))
  ids = split_ids(cache, IMN)
  assert not (set(ids["train"]) & set(ids["val"]) or set(ids["train"]) & set(ids["test_id"])
              or set(ids["val"]) & set(ids["test_id"]))
  assert len(s.ood["v2"]) == len(F.IMAGENET_CLASSES) * F.IMAGENET_PER_CLASS["imagenet_v2"]


def test_seeded_nested_samples(data_dir, cache):
  load(RET, data_dir, max_train=10)
  a = split_ids(cache, RET)
  load(RET, data_dir, max_train=10)
  assert split_ids(cache, RET) == a
  load(RET, data_dir, max_train=5)
  assert set(split_ids(cache, RET)["train"]) < set(a["train"])   # nested caps
  load(RET, data_dir, max_train=10, seed=1)
  assert set(split_ids(cache, RET)["train"]) != set(a["train"])
  load(IMN, data_dir)
  b = split_ids(cache, IMN)
  load(IMN, data_dir, split_seed=1)
  assert set(split_ids(cache, IMN)["val"]) != set(b["val"])


def test_second_load_reads_the_cache_without_tensorflow(data_dir, cache):
  first = {n: load(n, data_dir) for n in (RET, IMN)}
  code = textwrap.dedent(f"""
      import sys, json
      sys.path.insert(0, {str(REPO)!r})
      from tests.harness import smoke_config
      from datasets import DATASETS
      out = {{}}
      for n in ({RET!r}, {IMN!r}):
        s = DATASETS.get(n).load(smoke_config(n), {str(data_dir)!r})
        out[n] = [s.source_key, s.fingerprint(), type(s.train.large["image"]).__name__,
                  s.train.label.tolist()]
      out["tf"] = "tensorflow" in sys.modules
      print(json.dumps(out))
      """)
  env = dict(os.environ, LEVI_CACHE=str(cache), JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert got["tf"] is False
  for n, s in first.items():
    assert got[n] == [s.source_key, s.fingerprint(), "memmap", s.train.label.tolist()]


def test_missing_data_names_the_builder_and_the_flag(tmp_path, data_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(UserError) as e:
    load(RET, empty)
  msg = str(e.value)
  assert "diabetic_retinopathy_detection/original" in msg and "--data_dir" in msg
  assert f"{empty}/downloads/manual/" in msg and "\n" not in msg
  # ImageNet: one of the four builders missing.
  part = tmp_path / "part"
  shutil.copytree(data_dir, part, ignore=shutil.ignore_patterns("imagenet_r"))
  with pytest.raises(UserError) as e:
    load(IMN, part)
  msg = str(e.value)
  assert "imagenet_r" in msg and "--data_dir" in msg and "\n" not in msg
