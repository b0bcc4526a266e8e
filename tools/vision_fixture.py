"""Writes tiny prepared TFDS datasets, in TFDS's exact on-disk format, for the
vision benchmarks (``retinopathy_quality``, ``imagenet_sketch``), whose real
data is never downloaded at run time:

  python tools/vision_fixture.py --out /tmp/vision_tfds
  python run_benchmark.py --dataset imagenet_sketch --method all --preset smoke \\
      --data_dir /tmp/vision_tfds

TFDS's own builder classes (real features, versions, file layout) prepare
``diabetic_retinopathy_detection/original``, ``imagenet_sketch``,
``imagenet_a``, ``imagenet_r`` and ``imagenet_v2/matched-frequency``; only
where examples come from is replaced (``_split_generators`` yields synthetic
examples). Images are JPEG bytes, learnable: a class-dependent colour plus
noise. Retinopathy has low-resolution originals (300x200) and smooth
high-resolution ones (2600x1800), alternating, so the default resolution rule
(4 megapixels) finds both in every split.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

RETINO = ("diabetic_retinopathy_detection", "original")
IMAGENET_BUILDERS = (("imagenet_sketch", None), ("imagenet_a", None), ("imagenet_r", None),
                     ("imagenet_v2", "matched-frequency"))
BUILDERS = (RETINO, *IMAGENET_BUILDERS)
# Fixture classes in the 1000-class ImageNet index space; A and R cover subsets.
IMAGENET_CLASSES = (1, 7, 42, 300, 999)
SUBSETS = {"imagenet_a": (1, 7, 42, 300), "imagenet_r": (7, 42, 300, 999)}
LOW, HIGH = (300, 200), (2600, 1800)    # retinopathy originals (width, height)
RETINO_SPLITS = {"train": 10, "validation": 8, "test": 12}   # per class
IMAGENET_PER_CLASS = {"imagenet_sketch": 30, "imagenet_a": 8, "imagenet_r": 8,
                      "imagenet_v2": 8}


def colour(cls: int) -> np.ndarray:
  rng = np.random.default_rng(1000 + cls)
  return rng.uniform(30, 225, 3)


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def noisy_image(rng, cls: int, w: int = 64, h: int = 48) -> bytes:
  img = colour(cls)[None, None] + rng.normal(0, 25, (h, w, 3))
  return jpeg(np.clip(img, 0, 255).astype(np.uint8))


def smooth_image(rng, cls: int, size: tuple[int, int]) -> bytes:
  """A class colour with low-frequency noise, upsampled to ``size``: large
  originals that compress small."""
  from PIL import Image
  w, h = size
  small = colour(cls)[None, None] + rng.normal(0, 25, (12, 16, 3))
  small = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))
  return jpeg(np.asarray(small.resize((w, h), Image.BILINEAR)))


def retino_is_high(name: str) -> bool:
  """Whether a fixture retinopathy image (by its ``name``) is high-resolution:
  the right eyes are, the left ones are not."""
  return name.endswith("_right")


def retino_examples(split: str, seed: int = 0):
  rng = np.random.default_rng([seed, len(split)])
  offset = {"train": 0, "validation": 10_000, "test": 20_000, "sample": 30_000}[split]
  if split == "sample":   # the real builder's 10-image sample split is unlabelled
    for k in range(2):
      yield f"{offset + k}_left", {"name": f"{offset + k}_left", "label": -1,
                                   "image": smooth_image(rng, 0, LOW)}
    return
  k = 0
  for cls in range(5):
    for j in range(RETINO_SPLITS[split]):
      name = f"{offset + k // 2}_{'left' if k % 2 == 0 else 'right'}"
      size = HIGH if j % 2 else LOW
      yield name, {"name": name, "label": cls, "image": smooth_image(rng, cls, size)}
      k += 1


def imagenet_examples(builder, name: str, seed: int = 0):
  rng = np.random.default_rng([seed, len(name)])
  label = builder.info.features["label"]
  for cls in SUBSETS.get(name, IMAGENET_CLASSES):
    synset = label.int2str(cls)
    for j in range(IMAGENET_PER_CLASS[name]):
      img = noisy_image(rng, cls)
      if name == "imagenet_v2":      # folders named by class index
        fname = f"{cls}/{j:04d}.jpeg"
        yield f"{cls}_{j}", {"image": img, "label": cls, "file_name": fname}
      elif name == "imagenet_sketch":
        fname = f"{synset}/sketch_{j}.JPEG"
        yield fname, {"image": img, "label": synset, "file_name": fname}
      elif name == "imagenet_r":
        fname = f"{synset}/art_{j}.jpg"
        yield f"{synset}_{j}", {"image": img, "label": synset, "file_name": fname}
      else:
        fname = f"{synset}_{j:03d}.jpg"
        yield fname, {"image": img, "label": synset, "file_name": fname}


def write_one(out: Path, name: str, config: str | None, seed: int = 0) -> None:
  import tensorflow_datasets as tfds
  cls = tfds.builder_cls(name)

  def split_generators(self, dl_manager, *args, **kw):
    if name == RETINO[0]:
      return {s: retino_examples(s, seed) for s in ("sample", *RETINO_SPLITS)}
    return {"test": imagenet_examples(self, name, seed)}

  with mock.patch.object(cls, "_split_generators", split_generators):
    b = tfds.builder(name, config=config, data_dir=str(out))
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(out / "downloads" / "manual")))


def write(out: Path, only: str | None = None, seed: int = 0) -> Path:
  out.mkdir(parents=True, exist_ok=True)
  chosen = [b for b in BUILDERS if only in (None, b[0])
            or (only == "retinopathy_quality" and b == RETINO)
            or (only == "imagenet" and b in IMAGENET_BUILDERS)]
  if not chosen:
    names = ", ".join(["retinopathy_quality", "imagenet", *(b[0] for b in BUILDERS)])
    raise SystemExit(f"--only {only}: use one of {names}")
  for name, config in chosen:
    write_one(out, name, config, seed)
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True, type=Path, help="the TFDS data dir to write")
  ap.add_argument("--only", default=None,
                  help="one TFDS builder name, or retinopathy_quality / imagenet")
  ap.add_argument("--seed", type=int, default=0)
  a = ap.parse_args()
  t = time.time()
  write(a.out, a.only, a.seed)
  print(f"wrote TFDS vision fixtures to {a.out} in {time.time() - t:.1f}s")


if __name__ == "__main__":
  main()
