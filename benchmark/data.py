"""The one shape every benchmark yields: ``ShiftSplits``.

An ID ``train`` split, an ID ``val`` split (the only split model selection may
look at), ``test_id``, and named OOD groups. Each example carries the views the
models need: ``large`` (the large model's view: features, token ids or an
image) and ``small`` (the small model's view: categorical ids, or the image
again). One batch feeds both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Iterator, Mapping

import numpy as np

from benchmark.errors import DataError

REGRESSION = "regression"
CLASSIFICATION = "classification"
OOV_ID = 0  # ``encode_categories``: the id of every value unseen in training


class _Labelled:
  """The metric and the output width that a ``task`` and ``num_classes`` imply."""
  task: str
  num_classes: int

  @property
  def metric(self) -> str:
    return "rmse" if self.task == REGRESSION else "acc"

  @property
  def out_dim(self) -> int:
    return 1 if self.task == REGRESSION else self.num_classes


@dataclasses.dataclass(frozen=True)
class DatasetInfo(_Labelled):
  """What models need to know about a benchmark's inputs and labels."""
  name: str
  task: str                      # REGRESSION or CLASSIFICATION
  num_classes: int = 1           # 1 for regression
  # Static description of the views, e.g. {"num": 3, "cat_vocab": (10, 7)}.
  large_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  small_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  modality: str = "tabular"      # which backbones and small models fit
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))

  def eval_classes(self, split: str) -> np.ndarray | None:
    """The classes an eval split covers when it is a subset of the label
    space (``extra["ood_class_subsets"][group]``, e.g. ImageNet-A's 200
    classes): scores take the best of those classes. None: all classes."""
    subsets = self.extra.get("ood_class_subsets") or {}
    if split.startswith("ood/") and split[4:] in subsets:
      return np.asarray(subsets[split[4:]], np.int64)
    return None


@dataclasses.dataclass
class Split:
  """Arrays of one split; every leaf has the examples on axis 0."""
  large: dict[str, np.ndarray]
  small: dict[str, np.ndarray]
  label: np.ndarray

  def __post_init__(self):
    n = len(self.label)
    for view in (self.large, self.small):
      for k, v in view.items():
        if len(v) != n:
          raise ValueError(f"view array {k!r} has {len(v)} rows, labels {n}")

  def __len__(self) -> int:
    return len(self.label)

  def batch(self, idx: np.ndarray) -> dict[str, Any]:
    return {"large": {k: v[idx] for k, v in self.large.items()},
            "small": {k: v[idx] for k, v in self.small.items()},
            "label": self.label[idx]}

  def arrays(self) -> dict[str, Any]:
    return {"large": self.large, "small": self.small, "label": self.label}


@dataclasses.dataclass
class AuxTask(_Labelled):
  """An auxiliary task a benchmark declares (Model Ratatouille's auxiliary
  fine-tunings): other labels on inputs of the same kind, with their own
  ``train`` and ``val`` rows. Nothing is evaluated on it but ``val``."""
  name: str
  description: str
  task: str                      # REGRESSION or CLASSIFICATION
  num_classes: int
  train: Split
  val: Split

  def __post_init__(self):
    for name in ("train", "val"):
      if len(getattr(self, name)) == 0:
        raise DataError(f"auxiliary task {self.name!r}: split {name!r} is empty")

  def eval_splits(self) -> dict[str, Split]:
    return {"val": self.val}

  def eval_plan(self):
    return {"val": self.val}, {"val": ("val", None)}

  def fingerprint(self) -> str:
    h = hashlib.sha256(json.dumps([self.name, self.task, self.num_classes]).encode())
    for name, split in (("train", self.train), ("val", self.val)):
      h.update(name.encode())
      for leaf_name, arr in _leaves(split.arrays()):
        a = np.ascontiguousarray(arr)
        h.update(leaf_name.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class ShiftSplits:
  info: DatasetInfo
  train: Split
  val: Split
  test_id: Split
  ood: dict[str, Split]
  pretrain: Split | None = None  # only for benchmarks whose backbone is pre-trained here
  # Overlapping OOD groups (e.g. a movie with two OOD genres) can share one
  # pool, predicted once: ood[g] == ood_pool rows ood_index[g].
  ood_pool: Split | None = None
  ood_index: dict[str, np.ndarray] | None = None
  # Names the content of every view when the loader can (e.g. a decoded-image
  # cache keyed by its source files and settings): ``fingerprint`` then hashes
  # this and the labels instead of gigabytes of pixels. Dropped by ``map_large``.
  source_key: str | None = None
  # Auxiliary tasks (``AuxTask``) by name, for Model Ratatouille; not part of
  # ``fingerprint``: components of the target task do not depend on them.
  aux: dict[str, AuxTask] = dataclasses.field(default_factory=dict)
  # What the loader noticed in the data (a tiny OOD group, a label value never
  # seen in ID training, ...), by split name ("" = the whole dataset): warned
  # about once, and kept in the tables' ``note``. Not part of ``fingerprint``.
  notes: dict[str, str] = dataclasses.field(default_factory=dict)
  # OOD groups shown on their own but left out of the ``ood`` mean (too few
  # rows to weigh as much as the others). Not part of ``fingerprint``.
  ood_excluded: tuple[str, ...] = ()

  def __post_init__(self):
    for name in ("train", "val", "test_id"):
      if len(getattr(self, name)) == 0:
        raise DataError(f"dataset {self.info.name}: split {name!r} is empty; "
                        f"every benchmark needs ID train, val and test_id rows")
    if not self.ood:
      raise DataError(f"dataset {self.info.name}: no OOD group; add rows with "
                      f"split 'ood:<group>'")
    for g, s in self.ood.items():
      if len(s) == 0:
        raise DataError(f"dataset {self.info.name}: OOD group {g!r} is empty")

  def unseen_classes(self) -> dict[str, str]:
    """Eval splits holding a class that never occurs in ID training (no model
    can learn it): split -> a note saying which and how many examples.
    Empty for regression."""
    if self.info.task != CLASSIFICATION:
      return {}
    seen = set(np.unique(np.asarray(self.train.label)).tolist())
    out = {}
    for k, s in self.eval_splits().items():
      labels = np.asarray(s.label)
      lost = sorted(set(np.unique(labels).tolist()) - seen)
      if lost:
        shown = ", ".join(map(str, lost[:5])) + (" ..." if len(lost) > 5 else "")
        out[k] = (f"{len(lost)} class(es) ({shown}; {int(np.isin(labels, lost).sum())} "
                  f"example(s)) never occur in ID training")
    return out

  def eval_splits(self) -> dict[str, Split]:
    """Every split a trained component is evaluated on, by table name."""
    out = {"val": self.val, "test_id": self.test_id}
    out.update({f"ood/{g}": s for g, s in self.ood.items()})
    return out

  def eval_plan(self) -> tuple[dict[str, Split], dict[str, tuple[str, np.ndarray | None]]]:
    """What to predict (pools) and how each eval split is read off a pool."""
    pools = {"val": self.val, "test_id": self.test_id}
    plan: dict[str, tuple[str, np.ndarray | None]] = {"val": ("val", None),
                                                      "test_id": ("test_id", None)}
    if self.ood_pool is not None:
      pools["ood_pool"] = self.ood_pool
      plan.update({f"ood/{g}": ("ood_pool", self.ood_index[g]) for g in self.ood})
    else:
      pools.update({f"ood/{g}": s for g, s in self.ood.items()})
      plan.update({f"ood/{g}": (f"ood/{g}", None) for g in self.ood})
    return pools, plan

  def map_large(self, fn) -> "ShiftSplits":
    """A copy whose large-model views are ``fn(view)`` (e.g. tokenised text)."""
    m = lambda s: None if s is None else Split(fn(s.large), s.small, s.label)
    return dataclasses.replace(
        self, train=m(self.train), val=m(self.val), test_id=m(self.test_id),
        ood={g: m(s) for g, s in self.ood.items()}, pretrain=m(self.pretrain),
        ood_pool=m(self.ood_pool), source_key=None,
        aux={n: dataclasses.replace(a, train=m(a.train), val=m(a.val))
             for n, a in self.aux.items()})

  def fingerprint(self) -> str:
    """Content hash: components trained on other data never collide."""
    h = hashlib.sha256()
    h.update(json.dumps(self.info.to_json(), sort_keys=True).encode())
    named = [("train", self.train), ("val", self.val), ("test_id", self.test_id)]
    named += [(f"ood/{g}", s) for g, s in self.ood.items()]
    if self.pretrain is not None:
      named.append(("pretrain", self.pretrain))
    if self.source_key is not None:
      h.update(b"source:" + self.source_key.encode())
    for name, split in named:
      h.update(name.encode())
      tree = split.arrays() if self.source_key is None else {"label": split.label}
      for leaf_name, arr in _leaves(tree):
        h.update(leaf_name.encode())
        a = np.ascontiguousarray(arr)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _leaves(tree, prefix="") -> Iterator[tuple[str, np.ndarray]]:
  if isinstance(tree, Mapping):
    for k in sorted(tree):
      yield from _leaves(tree[k], f"{prefix}/{k}")
  else:
    yield prefix, tree


def cap_train(data, n: int):
  """``data`` (``ShiftSplits`` or ``AuxTask``) with its ID training split cut
  to at most ``n`` rows and every categorical id (a view's ``cat`` leaf) that
  the cut leaves unseen in training mapped to ``OOV_ID`` in every split, as
  ``encode_categories`` maps values unseen in training: a model trained on the
  cut never reads an embedding row no training step moved. The rows kept are
  the first ``n`` of one fixed permutation (seed 0), in the split's order, so
  a smaller cap keeps a subset of a larger one and every capped component of
  a run trains on the same rows."""
  train = data.train
  if not n or n >= len(train):
    return data
  keep = np.sort(np.random.default_rng(0).permutation(len(train))[: int(n)])
  rows = train.batch(keep)
  cut = Split(rows["large"], rows["small"], rows["label"])
  seen = {view: [set(np.unique(col).tolist()) for col in np.asarray(getattr(cut, view)["cat"]).T]
          for view in ("large", "small") if "cat" in getattr(cut, view)}

  def remap(split):
    if split is None or not seen:
      return split
    views = {}
    for view in ("large", "small"):
      v = getattr(split, view)
      if view in seen:
        cat = np.array(v["cat"])
        for j, known in enumerate(seen[view]):
          cat[~np.isin(cat[:, j], list(known)), j] = OOV_ID
        v = {**v, "cat": cat}
      views[view] = v
    return Split(views["large"], views["small"], split.label)

  if isinstance(data, AuxTask):
    return dataclasses.replace(data, train=remap(cut), val=remap(data.val))
  return dataclasses.replace(
      data, train=remap(cut), val=remap(data.val), test_id=remap(data.test_id),
      ood={g: remap(s) for g, s in data.ood.items()}, ood_pool=remap(data.ood_pool))


def concat_splits(splits: list[Split]) -> Split:
  cat = lambda ds: {k: np.concatenate([d[k] for d in ds]) for k in ds[0]}
  return Split(cat([s.large for s in splits]), cat([s.small for s in splits]),
               np.concatenate([s.label for s in splits]))


def encode_categories(columns: list[np.ndarray], fit: np.ndarray, n: int
                      ) -> tuple[np.ndarray, tuple[int, ...]]:
  """Categorical columns -> ids ``[n, len(columns)]`` and vocabulary sizes.
  The vocabulary is the values seen in rows ``fit`` (training rows); every
  other value maps to id 0, the out-of-vocabulary bucket."""
  ids, vocab = [], []
  for col in columns:
    col = np.asarray(col).astype(str)
    seen = sorted(set(col[fit]))
    lookup = {v: i + 1 for i, v in enumerate(seen)}
    ids.append(np.array([lookup.get(v, OOV_ID) for v in col], np.int32))
    vocab.append(len(seen) + 1)
  return (np.stack(ids, 1) if ids else np.zeros((n, 0), np.int32)), tuple(vocab)
