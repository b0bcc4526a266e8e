"""The paper's two vision benchmarks (Sec. 5, App. D.1), read from prepared
TFDS data dirs (``--data_dir``; TFDS data is never downloaded at run time).

``retinopathy_quality`` (TFDS ``diabetic_retinopathy_detection/original``,
manual download; 5 classes, grades 0-4): a quality shift by ORIGINAL image
resolution. An image is low-resolution when its original pixel count is below
``lowres_max_megapixels`` million (default 4.0), high-resolution otherwise.
* ID ``train`` = TFDS ``train`` high-res, ``val`` = ``validation`` high-res,
  ``test_id`` = ``test`` high-res;
* OOD ``lowres`` = ``test`` low-res.

``imagenet_sketch`` (ID; 1000 ImageNet classes): TFDS ``imagenet_sketch`` has
only a ``test`` split; it is split per class 80/10/10 (``val_fraction``,
``test_fraction``) by a permutation seeded with ``split_seed``. OOD groups:
``a`` = ``imagenet_a`` test, ``r`` = ``imagenet_r`` test, ``v2`` =
``imagenet_v2/matched-frequency`` test. Every TFDS builder here encodes
``label`` with the same 1000-class ImageNet ``ClassLabel`` (A, R: the
synset of the folder; V2: the folder's class index), so all labels share one
index space; ``info.extra["ood_class_subsets"]`` lists the classes A and R
cover (read off their label sets: 200 each on the real data).

Caps ``max_train`` / ``max_val`` / ``max_test`` / ``max_eval`` (per OOD group;
0 = no cap) keep the examples with the smallest seeded hash of their stable id
(the dataset's own ``name`` / ``file_name``), so a smaller cap gives a subset
of a larger one and the sample does not depend on file order.

Images are decoded with ``tf.data`` (decode, antialiased resize to
``image_size`` square, round to uint8) into ``$LEVI_CACHE/vision/<key>/
<split>.npy`` (key: builder, version, config, split, selected ids, size,
format version) and memory-mapped from there; a rerun with the same data and
settings reads only the cache and never imports TensorFlow. This module
imports TensorFlow only inside the functions that read TFDS.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmark import fetch
from benchmark.data import CLASSIFICATION, DatasetInfo, ShiftSplits, Split
from benchmark.errors import DataError, UserError
from benchmark.store import atomic_write_bytes, new_temp
from datasets.base import DATASETS, DatasetSpec

FORMAT_VERSION = 1
CAP_KEYS = ("max_train", "max_val", "max_test", "max_eval")
RETINOPATHY = "retinopathy_quality"
IMAGENET = "imagenet_sketch"


@dataclasses.dataclass(frozen=True)
class Source:
  """One split of one TFDS builder."""
  name: str
  config: str | None
  split: str
  id_key: str            # the feature naming each example stably
  manual: bool = False   # a manual-download dataset

  @property
  def full(self) -> str:
    return f"{self.name}/{self.config}" if self.config else self.name


RETINO = dict(name="diabetic_retinopathy_detection", config="original", id_key="name",
              manual=True)
SKETCH = Source("imagenet_sketch", None, "test", "file_name")
OOD_IMAGENET = {"a": Source("imagenet_a", None, "test", "file_name"),
                "r": Source("imagenet_r", None, "test", "file_name"),
                "v2": Source("imagenet_v2", "matched-frequency", "test", "file_name")}


# -- where the prepared data is (no TensorFlow) --------------------------------------

def tfds_root(data_dir: str | None) -> Path:
  """TFDS's own default when no --data_dir is given."""
  if data_dir:
    return Path(data_dir).expanduser()
  return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))


_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def prepared_fingerprint(data_dir: str | None, src: Source) -> list | None:
  """Sizes and times of the prepared files of ``src`` (every version), or None
  when none is prepared. Used to find the decoded cache without TensorFlow."""
  base = tfds_root(data_dir) / src.name
  if src.config:
    base = base / src.config
  if not base.is_dir():
    return None
  out = []
  for v in sorted(p for p in base.iterdir() if p.is_dir() and _VERSION.match(p.name)):
    if not (v / "dataset_info.json").is_file():
      continue
    for f in sorted(v.iterdir()):
      if f.is_file():
        st = f.stat()
        out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
  return out or None


def missing_message(bench: str, src: Source, data_dir: str | None, why: str = "") -> str:
  root = data_dir or f"{tfds_root(None)} (TFDS default)"
  d = data_dir or "DIR"
  cfg = f" --config {src.config}" if src.config else ""
  how = (f"download its files by hand (Kaggle) into {d}/downloads/manual/ and prepare it "
         f"with `tfds build {src.name}{cfg} --data_dir {d}`" if src.manual else
         f"prepare it with `tfds build {src.name}{cfg} --data_dir {d}` where it can be "
         f"downloaded")
  return (f"{bench} needs the TFDS dataset {src.full} (split {src.split!r}) prepared in "
          f"{root}{' (' + why + ')' if why else ''}; TFDS data is never downloaded at run "
          f"time: {how}, then pass --data_dir {d}")


# -- TFDS (TensorFlow imported only here) --------------------------------------------

def _builder(bench: str, src: Source, data_dir: str | None):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  try:
    b = tfds.builder(src.name, config=src.config, data_dir=data_dir)
  except Exception as e:  # unknown config, unreadable dir ...
    raise UserError(missing_message(bench, src, data_dir, type(e).__name__)) from e
  if not tf.io.gfile.exists(os.path.join(b.data_dir, "dataset_info.json")):
    raise UserError(missing_message(bench, src, data_dir, "not found"))
  if src.split not in b.info.splits:
    raise UserError(missing_message(bench, src, data_dir,
                                    f"it has splits {sorted(b.info.splits)}"))
  return b


def _dataset(b, split: str):
  import tensorflow_datasets as tfds
  return b.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()},
                      shuffle_files=False)


@dataclasses.dataclass
class Meta:
  """Pass 1 over one source: every example's id, label (and original size)."""
  ids: list[str]
  labels: np.ndarray
  pixels: np.ndarray | None
  version: str
  num_classes: int


def read_meta(bench: str, src: Source, data_dir: str | None, sizes: bool = False) -> Meta:
  import tensorflow as tf
  import tensorflow_datasets as tfds
  b = _builder(bench, src, data_dir)

  def one(ex):
    out = {"id": ex[src.id_key], "label": ex["label"]}
    if sizes:
      img = ex["image"]
      shape = tf.cond(tf.io.is_jpeg(img), lambda: tf.io.extract_jpeg_shape(img),
                      lambda: tf.shape(tf.io.decode_image(img, channels=3,
                                                          expand_animations=False)))
      out["pixels"] = tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64)
    return out

  ds = _dataset(b, src.split).map(one, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(1024).prefetch(tf.data.AUTOTUNE)
  ids, labels, pixels = [], [], []
  total = b.info.splits[src.split].num_examples
  with tqdm(total=total, desc=f"{src.full} {src.split}: labels", unit=" img",
            leave=False, disable=None, mininterval=2) as bar:
    for batch in tfds.as_numpy(ds):
      ids += [x.decode() for x in batch["id"]]
      labels.append(batch["label"])
      if sizes:
        pixels.append(batch["pixels"])
      bar.update(len(batch["label"]))
  if len(set(ids)) != len(ids):
    raise DataError(f"{src.full} {src.split}: example ids ({src.id_key}) are not unique")
  return Meta(ids, np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
              np.concatenate(pixels) if sizes and pixels else None, str(b.info.version),
              int(b.info.features["label"].num_classes))


def _decode_into(bench: str, src: Source, data_dir: str | None, positions: np.ndarray,
                 ids: list[str], size: int, out: np.ndarray) -> None:
  """Pass 2: decodes the examples at dataset ``positions`` (row ``i`` of
  ``out`` gets ``positions[i]``), resized to ``size`` x ``size``."""
  import tensorflow as tf
  import tensorflow_datasets as tfds
  b = _builder(bench, src, data_dir)
  n_all = b.info.splits[src.split].num_examples
  rowmap = np.full(max(n_all, int(positions.max()) + 1), -1, np.int64)
  rowmap[positions] = np.arange(len(positions))
  rowmap_t = tf.constant(rowmap)

  def keep(i, ex):
    return tf.gather(rowmap_t, i) >= 0

  def decode(i, ex):
    img = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
    img = tf.image.resize(img, (size, size), antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    return tf.gather(rowmap_t, i), ex[src.id_key], img

  ds = _dataset(b, src.split).enumerate().filter(keep)
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  done = 0
  with tqdm(total=len(positions), desc=f"{src.full} {src.split}: decoding", unit=" img",
            leave=False, disable=None, mininterval=2) as bar:
    for rows, got_ids, imgs in tfds.as_numpy(ds):
      for r, g in zip(rows, got_ids):
        if g.decode() != ids[r]:
          raise DataError(f"{src.full} {src.split}: example order changed between reads "
                          f"({g.decode()!r} where {ids[r]!r} was expected); delete the "
                          f"cache {fetch.cache_dir() / 'vision'} and retry")
      out[rows] = imgs
      done += len(rows)
      bar.update(len(rows))
  if done != len(positions):
    raise DataError(f"{src.full} {src.split}: decoded {done} of {len(positions)} images")


# -- decoded-image cache ---------------------------------------------------------------

def _hash(obj: Any, n: int = 20) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def cache_root() -> Path:
  return fetch.cache_dir() / "vision"


def _split_files(key: str, split: str) -> tuple[Path, Path, Path]:
  d = cache_root() / key
  return d / f"{split}.npy", d / f"{split}.labels.npy", d / f"{split}.ids.json"


def decoded_split(bench: str, src: Source, data_dir: str | None, meta: Meta,
                  positions: np.ndarray, size: int) -> str:
  """Decodes the chosen examples of ``src`` into the cache (unless there);
  returns the cache key."""
  ids = [meta.ids[p] for p in positions]
  labels = meta.labels[positions].astype(np.int32)
  key = _hash([FORMAT_VERSION, src.name, meta.version, src.config, src.split,
               _hash(ids, 64), int(size)])
  img_path, lab_path, ids_path = _split_files(key, src.split)
  if img_path.exists() and lab_path.exists() and ids_path.exists():
    return key
  img_path.parent.mkdir(parents=True, exist_ok=True)
  # Temporary files are created new (O_EXCL | O_NOFOLLOW): the cache may be
  # shared, and a symlink planted under a guessable name is never written through.
  temps = []
  try:
    fd, tmp = new_temp(img_path, read_write=True)
    temps.append(tmp)
    shape = (len(ids), size, size, 3)
    with os.fdopen(fd, "w+b") as f:
      np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(
          np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
      arr = np.memmap(f, dtype=np.uint8, mode="r+", offset=f.tell(), shape=shape)
    if len(ids):
      _decode_into(bench, src, data_dir, positions, ids, size, arr)
    arr.flush()
    del arr
    fd_i, tmp_i = new_temp(ids_path)
    temps.append(tmp_i)
    with os.fdopen(fd_i, "w") as f:
      f.write(json.dumps(ids))
    fd_l, tmp_l = new_temp(lab_path)
    temps.append(tmp_l)
    with os.fdopen(fd_l, "wb") as f:
      np.save(f, labels)
    os.replace(tmp_i, ids_path)
    os.replace(tmp_l, lab_path)
    os.replace(tmp, img_path)   # last: the images' presence means the split is whole
  finally:
    for t in temps:
      if t.exists():
        t.unlink()
  return key


def _open_split(key: str, split: str) -> Split:
  img_path, lab_path, _ = _split_files(key, split)
  arr = np.load(img_path, mmap_mode="r", allow_pickle=False)
  labels = np.load(lab_path, allow_pickle=False).astype(np.int32)
  if len(arr) != len(labels):
    raise DataError(f"{img_path}: {len(arr)} images for {len(labels)} labels; delete it")
  return Split(large={"image": arr}, small={"image": arr}, label=labels)


# -- seeded, nested selection ------------------------------------------------------------

def rank(seed: int, tag: str, ident: str) -> int:
  h = hashlib.blake2b(f"{seed}\x1f{tag}\x1f{ident}".encode(), digest_size=8)
  return int.from_bytes(h.digest(), "big")


def pick(positions, ids: list[str], seed: int, tag: str, cap: int) -> np.ndarray:
  """``positions`` ordered by a seeded hash of their ids, the first ``cap``
  (all when 0): a smaller cap gives a prefix of a larger one."""
  order = sorted(positions, key=lambda p: rank(seed, tag, ids[p]))
  cap = int(cap)
  return np.asarray(order[:cap] if cap > 0 else order, np.int64)


# -- the benchmarks ------------------------------------------------------------------------

def _manifest_path(bench: str, ident: Any) -> Path:
  return cache_root() / "manifests" / f"{bench}-{_hash(ident)}.json"


def _settings(c) -> dict:
  return {k: c[k] for k in sorted(c.keys())}


def _load_cached(bench: str, data_dir: str | None, sources: list[Source], c):
  """The splits straight from the cache (no TensorFlow), or None."""
  if data_dir and "://" in data_dir:  # gs:// and the like: TFDS reads them, Path cannot
    return None, None
  fps = [prepared_fingerprint(data_dir, s) for s in sources]
  for src, fp in zip(sources, fps):
    if fp is None:  # fail before importing TensorFlow
      raise UserError(missing_message(bench, src, data_dir, "not found"))
  ident = [FORMAT_VERSION, bench, fps, _settings(c)]
  path = _manifest_path(bench, ident)
  if path.exists():
    try:
      m = json.loads(path.read_text())
      return _from_manifest(bench, m), ident
    except Exception:  # a damaged or half-deleted cache is rebuilt
      pass
  return None, ident


def _from_manifest(bench: str, m: dict) -> ShiftSplits:
  s = {name: _open_split(v["key"], v["split"]) for name, v in m["splits"].items()}
  size = int(m["image_size"])
  info = DatasetInfo(name=bench, task=CLASSIFICATION, num_classes=int(m["num_classes"]),
                     large_spec={"image": (size, size, 3)},
                     small_spec={"image": (size, size, 3)}, modality="image",
                     extra=m["extra"])
  ood = {k[4:]: v for k, v in s.items() if k.startswith("ood/")}
  return ShiftSplits(info=info, train=s["train"], val=s["val"], test_id=s["test_id"],
                     ood=ood, source_key=f"vision:{_hash(m['splits'], 40)}")


def _run(bench: str, data_dir: str | None, ident, plan: dict, size: int,
         num_classes: int, extra: dict) -> ShiftSplits:
  """``plan``: output split -> (source, meta, positions); decodes, caches and
  opens the splits from the cache."""
  splits = {out: {"key": decoded_split(bench, src, data_dir, meta, pos, size),
                  "split": src.split}
            for out, (src, meta, pos) in plan.items()}
  m = {"splits": splits, "image_size": size, "num_classes": num_classes,
       "extra": json.loads(json.dumps(extra, default=str, sort_keys=True))}
  if ident is not None:
    try:
      atomic_write_bytes(_manifest_path(bench, ident), json.dumps(m, sort_keys=True).encode())
    except (OSError, UserError):
      pass
  return _from_manifest(bench, m)


def _check(c, bench: str) -> int:
  size = int(c.image_size)
  if not 8 <= size <= 1024:
    raise UserError(f"--config.data.{bench}.image_size={c.image_size}: use 8-1024 pixels")
  for k in CAP_KEYS:
    if int(c[k]) < 0:
      raise UserError(f"--config.data.{bench}.{k}={c[k]}: use 0 (no cap) or a positive "
                      f"number")
  return size


def load_retinopathy(config, data_dir):
  c = config.data[RETINOPATHY]
  size = _check(c, RETINOPATHY)
  limit = float(c.lowres_max_megapixels) * 1e6
  if limit <= 0:
    raise UserError(f"--config.data.{RETINOPATHY}.lowres_max_megapixels="
                    f"{c.lowres_max_megapixels}: use a positive number")
  srcs = {s: Source(split=s, **RETINO) for s in ("train", "validation", "test")}
  cached, ident = _load_cached(RETINOPATHY, data_dir, list(srcs.values()), c)
  if cached is not None:
    return cached
  metas = {s: read_meta(RETINOPATHY, src, data_dir, sizes=True) for s, src in srcs.items()}
  seed = int(c.seed)
  counts, pools = {}, {}
  for s, m in metas.items():
    labelled = m.labels >= 0
    low = labelled & (m.pixels < limit)
    high = labelled & (m.pixels >= limit)
    counts[s] = {"high": int(high.sum()), "low": int(low.sum()),
                 "unlabelled": int((~labelled).sum())}
    pools[s] = (np.flatnonzero(high), np.flatnonzero(low))
  plan = {
      "train": (srcs["train"], metas["train"],
                pick(pools["train"][0], metas["train"].ids, seed, "train", c.max_train)),
      "val": (srcs["validation"], metas["validation"],
              pick(pools["validation"][0], metas["validation"].ids, seed, "val", c.max_val)),
      "test_id": (srcs["test"], metas["test"],
                  pick(pools["test"][0], metas["test"].ids, seed, "test_id", c.max_test)),
      "ood/lowres": (srcs["test"], metas["test"],
                     pick(pools["test"][1], metas["test"].ids, seed, "lowres", c.max_eval)),
  }
  for name, (_, _, pos) in plan.items():
    if not len(pos):
      raise DataError(f"{RETINOPATHY}: split {name} is empty under the resolution rule "
                      f"(low-res: fewer than {c.lowres_max_megapixels} megapixels; counts "
                      f"{counts}); change --config.data.{RETINOPATHY}.lowres_max_megapixels")
  extra = {
      "rule": f"low-resolution = original width*height < {c.lowres_max_megapixels} "
              f"megapixels; ID train/val/test_id = TFDS train/validation/test high-res, "
              f"OOD lowres = TFDS test low-res",
      "source": srcs["train"].full, "tfds_version": metas["train"].version,
      "counts": counts, "selected": {k: int(len(v[2])) for k, v in plan.items()},
  }
  return _run(RETINOPATHY, data_dir, ident, plan, size, 5, extra)


def load_imagenet(config, data_dir):
  c = config.data[IMAGENET]
  size = _check(c, IMAGENET)
  vf, tf_ = float(c.val_fraction), float(c.test_fraction)
  if not (0 < vf and 0 < tf_ and vf + tf_ < 1):
    raise UserError(f"--config.data.{IMAGENET}.val_fraction / test_fraction = {vf} / {tf_}: "
                    f"use positive fractions summing to less than 1")
  oods = dict(OOD_IMAGENET)
  oods["v2"] = dataclasses.replace(oods["v2"], config=str(c.v2_config))
  cached, ident = _load_cached(IMAGENET, data_dir, [SKETCH, *oods.values()], c)
  if cached is not None:
    return cached
  sk = read_meta(IMAGENET, SKETCH, data_dir)
  ood_meta = {g: read_meta(IMAGENET, s, data_dir) for g, s in oods.items()}
  split_seed, seed = int(c.split_seed), int(c.seed)
  parts: dict[str, list[int]] = {"train": [], "val": [], "test_id": []}
  for cls in np.unique(sk.labels):
    members = np.flatnonzero(sk.labels == cls)
    order = sorted(members, key=lambda p: rank(split_seed, "split", sk.ids[p]))
    n_val, n_test = int(round(len(order) * vf)), int(round(len(order) * tf_))
    parts["val"] += order[:n_val]
    parts["test_id"] += order[n_val:n_val + n_test]
    parts["train"] += order[n_val + n_test:]
  caps = {"train": c.max_train, "val": c.max_val, "test_id": c.max_test}
  plan = {name: (SKETCH, sk, pick(parts[name], sk.ids, seed, name, caps[name]))
          for name in ("train", "val", "test_id")}
  for g, m in ood_meta.items():
    plan[f"ood/{g}"] = (oods[g], m, pick(range(len(m.ids)), m.ids, seed, f"ood/{g}",
                                         c.max_eval))
  nc = sk.num_classes
  for g, m in ood_meta.items():
    if m.num_classes != nc or (len(m.labels) and (m.labels.min() < 0 or m.labels.max() >= nc)):
      raise DataError(f"{oods[g].full}: labels are not in the {nc}-class ImageNet index "
                      f"space of imagenet_sketch")
  for name, (_, _, pos) in plan.items():
    if not len(pos):
      raise DataError(f"{IMAGENET}: split {name} is empty")
  extra = {
      "rule": f"ID = imagenet_sketch test split per class {1 - vf - tf_:.2f}/{vf:.2f}/"
              f"{tf_:.2f} (train/val/test_id) by a permutation seeded with split_seed; "
              f"OOD a/r/v2 = imagenet_a, imagenet_r, imagenet_v2/{c.v2_config} test",
      "tfds_versions": {SKETCH.full: sk.version,
                        **{oods[g].full: m.version for g, m in ood_meta.items()}},
      "counts": {"imagenet_sketch": len(sk.ids), **{g: len(m.ids) for g, m in ood_meta.items()},
                 **{f"id_{k}": len(v) for k, v in parts.items()}},
      "selected": {k: int(len(v[2])) for k, v in plan.items()},
      # TFDS keeps all 1000 class names for A and R: the classes they cover are
      # read off their labels.
      "ood_class_subsets": {g: sorted(int(x) for x in np.unique(ood_meta[g].labels))
                            for g in ("a", "r")},
  }
  return _run(IMAGENET, data_dir, ident, plan, size, nc, extra)


def _presets(name: str, extra_paper: dict | None = None) -> dict:
  d = f"data.{name}"
  caps = lambda t, v, te, e: {f"{d}.max_train": t, f"{d}.max_val": v, f"{d}.max_test": te,
                              f"{d}.max_eval": e}
  return {
      # One step per dispatch on CPU: XLA's CPU backend runs a convolutional
      # step 3-4x slower inside a scan (benchmark/trainer.py).
      "smoke": {f"{d}.image_size": 32, **caps(64, 32, 32, 32), "batch_size": 32,
                "eval_batch_size": 64, "steps_per_dispatch": 1},
      "cpu": {f"{d}.image_size": 64, **caps(4000, 1000, 2000, 2000),
              "steps_per_dispatch": 1},
      # App. D.3: SGD, batch 512 for vision; App. D.2: adapters of 1024 units.
      "paper": {f"{d}.image_size": 224, **caps(0, 0, 0, 0), "optimizer": "sgd",
                "batch_size": 512, "model.adapter_hidden": 1024, "steps_per_dispatch": 8,
                **(extra_paper or {})},
  }


CAPS0 = {k: 0 for k in CAP_KEYS}

DATASETS.add(RETINOPATHY, DatasetSpec(
    name=RETINOPATHY,
    description="Diabetic Retinopathy quality shift (paper Tables 2, 4): ID = high-resolution "
                "fundus images, OOD lowres = low-resolution ones (original size); 5 grades; "
                "needs --data_dir with TFDS diabetic_retinopathy_detection/original prepared",
    load=load_retinopathy, default_backbone="vit_b16",
    data_defaults={"image_size": 224, **CAPS0, "seed": 0, "lowres_max_megapixels": 4.0},
    presets=_presets(RETINOPATHY)))

DATASETS.add(IMAGENET, DatasetSpec(
    name=IMAGENET,
    description="ImageNet-Sketch -> ImageNet-A / -R / -V2 (paper Tables 2, 4, 12, 17); "
                "1000 classes; needs --data_dir with the TFDS imagenet_sketch, imagenet_a, "
                "imagenet_r and imagenet_v2/matched-frequency prepared",
    load=load_imagenet, default_backbone="vit_b16",
    data_defaults={"image_size": 224, **CAPS0, "seed": 0, "split_seed": 0,
                   "val_fraction": 0.1, "test_fraction": 0.1,
                   "v2_config": "matched-frequency"},
    presets=_presets(IMAGENET)))
