"""``fashion_mnist_quality``: an offline image-quality shift on Fashion-MNIST,
mirroring the paper's retinopathy quality shift (clean ID images, degraded
OOD images) for researchers without the paper's vision data.

Source: the IDX files of Fashion-MNIST (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``), from ``--data_dir`` or the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), which is
installed with apt when missing and possible.

Splits (seeded by ``data.fashion_mnist_quality.seed``):
* ID ``train`` / ``val``: the 60,000 training images, 5,000 of them held out
  for validation;
* ``test_id``: 5,000 of the 10,000 test images, clean;
* OOD groups: the other 5,000 test images, each group the same images
  degraded one way at their native 28x28 resolution:
  ``lowres`` (4x4 block average to 7x7, then bilinear upsampling back),
  ``blur`` (Gaussian blur, sigma 1.5 pixels), ``noise`` (additive Gaussian
  noise, sigma 50 grey levels, seeded, clipped to 0-255).
* auxiliary task ``rotation`` (Model Ratatouille): ID train images (a seeded
  sample of at most 10,000) and the ID val images, turned by a seeded
  multiple of 90 degrees, labelled by the turn (4 classes).
Caps (``max_train`` ...) take seeded, nested samples. Images are then resized
(bilinear) to ``image_size`` and repeated to 3 channels for the backbone; the
small model (the 4-layer CNN) sees the same images.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmark.data import CLASSIFICATION, AuxTask, DatasetInfo, ShiftSplits, Split
from benchmark.errors import UserError
from benchmark.readers import read_idx
from datasets.base import DATASETS, DatasetSpec

NAME = "fashion_mnist_quality"
AUX_MAX_TRAIN = 10_000
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
SHIFTS = ("lowres", "blur", "noise")


# -- files -------------------------------------------------------------------------

def _find(folder: Path) -> dict[str, Path] | None:
  out = {}
  for key, stem in FILES.items():
    hits = [folder / (stem + ext) for ext in (".gz", "")]
    got = next((h for h in hits if h.is_file()), None)
    if got is None:
      return None
    out[key] = got
  return out


def _apt_install() -> bool:
  """Installs the Debian package when apt can (root, apt-get present)."""
  if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
    return False
  print(f"installing the Debian package {DEBIAN_PACKAGE} (Fashion-MNIST) with apt-get",
        file=sys.stderr)
  try:  # bounded: a stuck apt lock must not hang the run
    r = subprocess.run(["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE],
                       capture_output=True, text=True, timeout=600)
  except subprocess.TimeoutExpired:
    return False
  return r.returncode == 0


def locate(data_dir: str | None) -> dict[str, Path]:
  names = ", ".join(s + ".gz" for s in FILES.values())
  if data_dir:
    got = _find(Path(data_dir))
    if got is None:
      raise UserError(f"{NAME}: --data_dir {data_dir} lacks the Fashion-MNIST IDX files "
                      f"({names}); put them there, or drop --data_dir to use the Debian "
                      f"package {DEBIAN_PACKAGE}")
    return got
  got = _find(DEBIAN_DIR)
  if got is None and _apt_install():
    got = _find(DEBIAN_DIR)
  if got is None:
    raise UserError(f"{NAME}: Fashion-MNIST not found in {DEBIAN_DIR}; install it with "
                    f"`apt-get install {DEBIAN_PACKAGE}`, or pass --data_dir DIR holding "
                    f"{names}")
  return got


# -- degradations (at the native 28x28 resolution, uint8 in and out) -------------------

def lowres(x: np.ndarray, factor: int = 4) -> np.ndarray:
  n, h, w = x.shape
  small = x.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
  return resize(small, h, w)


def gaussian_blur(x: np.ndarray, sigma: float = 1.5) -> np.ndarray:
  r = int(np.ceil(3 * sigma))
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  k /= k.sum()
  f = x.astype(np.float32)
  for axis in (1, 2):  # separable; edges reflected
    pad = [(0, 0)] * 3
    pad[axis] = (r, r)
    p = np.pad(f, pad, mode="reflect")
    f = sum(k[i] * np.take(p, np.arange(i, i + x.shape[axis]), axis=axis)
            for i in range(2 * r + 1))
  return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def add_noise(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return np.clip(np.rint(x + rng.normal(0.0, sigma, x.shape)), 0, 255).astype(np.uint8)


def resize(x: np.ndarray, h: int, w: int, chunk: int = 4096) -> np.ndarray:
  """Bilinear resize of ``[N, h0, w0]`` images (any dtype) to uint8 ``[N, h, w]``."""
  import jax
  import jax.numpy as jnp
  if x.shape[1:] == (h, w):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
  fn = jax.jit(lambda a: jax.image.resize(a, (a.shape[0], h, w), "bilinear"))
  out = [np.asarray(fn(jnp.asarray(x[i:i + chunk], jnp.float32)))
         for i in range(0, len(x), chunk)]
  return np.clip(np.rint(np.concatenate(out)), 0, 255).astype(np.uint8)


# -- splits ------------------------------------------------------------------------------

def _cap(idx: np.ndarray, cap: int, rng_seed: int) -> np.ndarray:
  """A seeded sample of at most ``cap`` of ``idx`` (0 = all), nested across caps."""
  if not cap or cap >= len(idx):
    return idx
  order = np.random.default_rng(rng_seed).permutation(len(idx))
  return np.sort(idx[order[:cap]])


def _rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(gray[..., None], 3, axis=-1)


def load(config, data_dir) -> ShiftSplits:
  c = config.data[NAME]
  files = locate(data_dir)
  arrays = {k: read_idx(p) for k, p in files.items()}
  for part in ("train", "test"):
    x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
      raise UserError(f"{files[part + '_x']}: images {x.shape} and labels {y.shape} do not "
                      f"pair up; these are not Fashion-MNIST IDX files")
    # What the degradations and the 10-way head assume; a damaged header or
    # label byte would otherwise pass as data (label 10 trains silently).
    if x.shape[1:] != (28, 28) or x.dtype != np.uint8:
      raise UserError(f"{files[part + '_x']}: {x.dtype} images of {x.shape[1]}x{x.shape[2]} "
                      f"pixels; Fashion-MNIST's are uint8 28x28: the file is corrupt or "
                      f"another dataset's, download it again")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and not (
        0 <= y.min() and y.max() < len(CLASSES))):
      raise UserError(f"{files[part + '_y']}: labels outside 0-{len(CLASSES) - 1} (or not "
                      f"integers); the file is corrupt or another dataset's, download it "
                      f"again")
  seed, size = int(c.seed), int(c.image_size)
  rng = np.random.default_rng(seed)
  perm = rng.permutation(len(arrays["train_y"]))
  n_val = int(c.val_size)
  val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
  tperm = rng.permutation(len(arrays["test_y"]))
  half = len(tperm) // 2
  test_idx, ood_idx = np.sort(tperm[:half]), np.sort(tperm[half:])
  train_idx = _cap(train_idx, int(c.max_train), seed + 1)
  val_idx = _cap(val_idx, int(c.max_val), seed + 2)
  test_idx = _cap(test_idx, int(c.max_test), seed + 3)
  ood_idx = _cap(ood_idx, int(c.max_eval), seed + 4)

  def split(x28: np.ndarray, y: np.ndarray) -> Split:
    img = _rgb(resize(x28, size, size))
    return Split({"image": img}, {"image": img}, y.astype(np.int32))

  tx, ty, ex, ey = arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]
  clean = ex[ood_idx]
  degraded = {"lowres": lowres(clean), "blur": gaussian_blur(clean, float(c.blur_sigma)),
              "noise": add_noise(clean, float(c.noise_sigma), seed + 5)}
  shifts = [s.strip() for s in str(c.shifts).split(",") if s.strip()]
  unknown = sorted(set(shifts) - set(SHIFTS))
  if unknown or not shifts:
    raise UserError(f"config data.{NAME}.shifts={c.shifts!r}: choose among "
                    f"{', '.join(SHIFTS)}, e.g. --config.data.{NAME}.shifts=lowres,blur")
  h = hashlib.sha256()
  for p in files.values():
    st = p.stat()
    h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
  info = DatasetInfo(
      name=NAME, task=CLASSIFICATION, num_classes=10,
      large_spec={"image": (size, size, 3)}, small_spec={"image": (size, size, 3)},
      modality="image",
      extra={"classes": list(CLASSES), "source": str(files["train_x"].parent),
             "n": {"train": len(train_idx), "val": len(val_idx), "test_id": len(test_idx),
                   "ood_each": len(ood_idx)},
             "shifts": {"lowres": "4x4 block average to 7x7, bilinear back to 28x28",
                        "blur": f"Gaussian blur, sigma {float(c.blur_sigma)} px",
                        "noise": f"additive Gaussian noise, sigma {float(c.noise_sigma)} "
                                 f"grey levels, seed {seed + 5}"}})
  def rotated(x28: np.ndarray, salt: int) -> Split:
    turns = np.random.default_rng(seed + salt).integers(0, 4, len(x28))
    return split(np.stack([np.rot90(x, k) for x, k in zip(x28, turns)]), turns)

  # A seeded sample of at most 10,000 training images: the copy stays small
  # at 224 pixels (1.5 GB).
  aux_idx = _cap(train_idx, min(AUX_MAX_TRAIN, len(train_idx)), seed + 8)
  rotation = AuxTask("rotation", "the ID images turned by k x 90 degrees; label k",
                     CLASSIFICATION, 4, rotated(tx[aux_idx], 6), rotated(tx[val_idx], 7))
  return ShiftSplits(
      info, train=split(tx[train_idx], ty[train_idx]), val=split(tx[val_idx], ty[val_idx]),
      test_id=split(ex[test_idx], ey[test_idx]),
      ood={s: split(degraded[s], ey[ood_idx]) for s in shifts}, aux={"rotation": rotation})


DATASETS.add(NAME, DatasetSpec(
    name=NAME,
    description="Fashion-MNIST quality shift (offline vision): ID = clean images, OOD = "
                "held-out test images low-resolution, blurred or noisy; accuracy",
    load=load, default_backbone="efficientnet_lite0",
    data_defaults={"seed": 0, "image_size": 224, "val_size": 5000, "max_train": 0,
                   "max_val": 0, "max_test": 0, "max_eval": 0, "blur_sigma": 1.5,
                   "noise_sigma": 50.0, "shifts": "lowres,blur,noise"},
    presets={
        "smoke": {f"data.{NAME}.image_size": 32, f"data.{NAME}.max_train": 128,
                  f"data.{NAME}.max_val": 64, f"data.{NAME}.max_test": 64,
                  f"data.{NAME}.max_eval": 64, "batch_size": 32, "eval_batch_size": 128,
                  "epochs": 2, "steps_per_dispatch": 1},
        "cpu": {f"data.{NAME}.image_size": 64, f"data.{NAME}.max_train": 2000,
                f"data.{NAME}.max_val": 500, f"data.{NAME}.max_test": 1000,
                f"data.{NAME}.max_eval": 1000, "batch_size": 64, "eval_batch_size": 256,
                "epochs": 3, "model.adapter_hidden": 128,
                # XLA's CPU backend runs a convolutional step 3-4x slower
                # inside a scan: one step per dispatch on CPU.
                "steps_per_dispatch": 1},
        # App. D.3's vision settings: SGD, batch 512, 1024-unit adapting layers.
        "paper": {"optimizer": "sgd", "batch_size": 512, "epochs": 10,
                  "model.adapter_hidden": 1024, "steps_per_dispatch": 8},
    }))
