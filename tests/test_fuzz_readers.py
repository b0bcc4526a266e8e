"""Fuzzed input for every reader: valid fixture files of each format the
harness reads, mutated and truncated by ``hypothesis`` (bounded, derandomized
examples), must either read with the right shape or fail with the harness's
one-line error naming the input; no other exception, no hang (an alarm), no
partial record or sample.

Formats: GroupLens ``u.data`` / ``u.item`` / ``u.user``, Amazon TSV and JSON
lines (and the sample cache), IDX, ``.pth`` (legacy and zip), ``.npz`` (the
store's and a ViT checkpoint's), safetensors, store JSON records, the tabular
CSV. ``LEVI_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_readers.py`` runs a
deeper, random search.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from tests import pth_files as PF

# Few examples each, the same every run: the suite stays within seconds per
# format. LEVI_FUZZ_EXAMPLES=N explores N fresh random examples per test instead.
_DEEP = int(os.environ.get("LEVI_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 30, deadline=None, derandomize=not _DEEP,
                database=None, suppress_health_check=list(HealthCheck), print_blob=False)
FUZZ40 = settings(FUZZ, max_examples=_DEEP or 40)   # cheap readers: more examples

# Bytes that mean something in one format or another.
TOKENS = [b"\n", b"\r\n", b"\t", b"|", b",", b'"', b"\x00", b"\xff\xfe", b"-1", b"0", b"7",
          b"nan", b"inf", b"1e999", b"99999999999999999999", b"{", b"}", b"[", b"]", b":",
          b"\\", b" ", b"\x1f\x8b", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x02"]
_position = st.one_of(st.integers(0, 96), st.integers(0, 1 << 30))
_op = st.tuples(st.sampled_from(["truncate", "flip", "set", "delete", "insert", "duplicate"]),
                _position, st.integers(0, 255),
                st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=6)))
MUTATIONS = st.lists(_op, min_size=1, max_size=4)


def mutate(data: bytes, ops) -> bytes:
  """``data`` after ``ops``: cut at, flip a bit of, set, delete, insert or
  duplicate bytes at positions taken modulo the current length."""
  b = bytearray(data)
  for kind, pos, k, blob in ops:
    n = len(b)
    i = pos % (n + 1)
    if kind == "truncate":
      del b[i:]
    elif kind == "flip" and n:
      b[i % n] ^= 1 << (k % 8)
    elif kind == "set" and n:
      b[i % n] = k
    elif kind == "delete":
      del b[i:i + 1 + k % 16]
    elif kind == "insert":
      b[i:i] = blob
    elif kind == "duplicate":
      b[i:i] = b[i:i + 1 + k % 64]
  return bytes(b)


class Hang(BaseException):
  """Raised by the alarm: a BaseException, so no reader's ``except`` eats it."""


@contextlib.contextmanager
def no_hang(seconds: int = 20):
  def fire(*_):
    raise Hang(f"a reader ran past {seconds} s")
  old = signal.signal(signal.SIGALRM, fire)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def read_or_user_error(fn, names: Path | str):
  """``fn()``'s value, or None when it raised the harness's one-line error,
  which must name ``names`` (the input file or folder). Anything else
  propagates and fails the example."""
  try:
    with no_hang():
      got = fn()
    event("read")   # --hypothesis-show-statistics: how many read, how many refused
    return got
  except UserError as e:
    msg = str(e)
    assert "\n" not in msg, msg
    assert str(names) in msg, msg
    event("refused in one line")
    return None


@contextlib.contextmanager
def scratch():
  with tempfile.TemporaryDirectory(prefix="fuzz") as d:
    yield Path(d)


@contextlib.contextmanager
def env(**kw):
  old = {k: os.environ.get(k) for k in kw}
  os.environ.update(kw)
  try:
    yield
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def check_splits(s, label_range=None) -> None:
  """Every split of ``s``: views and labels the same length, labels finite,
  within ``label_range`` (the benchmark's own splits) or the auxiliary task's
  classes."""
  own = [s.train, s.val, s.test_id, *s.ood.values()]
  aux = [(a, t) for a in (s.aux or {}).values() for t in (a.train, a.val)]
  for p, lo_hi in [(p, label_range) for p in own] + [
      (t, (0, a.num_classes - 1) if a.task == "classification" else None) for a, t in aux]:
    for view in (p.large, p.small):
      for v in view.values():
        assert len(v) == len(p.label)
    lab = np.asarray(p.label, np.float64)
    assert np.isfinite(lab).all()
    if lo_hi is not None and len(lab):
      assert lo_hi[0] <= lab.min() and lab.max() <= lo_hi[1], (lab.min(), lab.max(), lo_hi)


def _write_mutated(folder: Path, name: str, ops, as_text: bool) -> Path:
  """Mutates ``folder/name``: its bytes, or (``as_text``, for a gzipped file)
  its decompressed content written back uncompressed under the plain name."""
  p = folder / name
  data = p.read_bytes()
  if as_text and name.endswith(".gz"):
    p.unlink()
    p = p.with_suffix("")
    data = gzip.decompress(data)
  p.write_bytes(mutate(data, ops))
  return p


# -- GroupLens ml-100k ------------------------------------------------------------------

def _grouplens_frame() -> pd.DataFrame:
  rng = np.random.default_rng(0)
  genres = [("Drama",), ("Comedy", "Romance"), ("Horror",), ("Documentary",),
            ("Action", "Sci-Fi"), ("Horror", "Thriller"), ("Western",), ("Animation",)]
  rows = []
  for k in range(60):
    u, i = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    rows.append({"user_id": str(u), "item_id": str(i), "rating": float(rng.integers(1, 6)),
                 "timestamp": 880000000 + k, "age": str(20 + 3 * u), "gender": "MF"[u % 2],
                 "occupation": ["writer", "doctor", "other"][u % 3], "zip_code": f"{u:05d}",
                 "title": f"Movie {i} (199{i})", "genres": genres[i - 1]})
  return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def grouplens(tmp_path_factory) -> Path:
  from tests.test_movielens import write_grouplens
  folder = tmp_path_factory.mktemp("ml") / "ml-100k"
  write_grouplens(_grouplens_frame(), folder)
  return folder


@FUZZ
@given(name=st.sampled_from(["u.data", "u.item", "u.user"]), ops=MUTATIONS)
def test_grouplens(grouplens, name, ops):
  import shutil

  from datasets import DATASETS
  from tests.harness import smoke_config
  cfg = smoke_config("movielens_genre", **{"data.movielens_genre.min_ood_ratings": 1})
  with scratch() as d:
    folder = d / "ml-100k"
    shutil.copytree(grouplens, folder)
    _write_mutated(folder, name, ops, as_text=False)
    s = read_or_user_error(lambda: DATASETS.get("movielens_genre").load(cfg, str(folder)),
                           folder)
    if s is not None:
      lines = [l for l in (folder / "u.data").read_bytes().splitlines() if l.strip()]
      n = len(s.train) + len(s.val) + len(s.test_id)
      assert n == s.info.extra["n_id"] <= len(lines)   # no rating invented or dropped
      assert s.info.extra["n_id"] + s.info.extra["n_ood"] == len(lines)
      check_splits(s, (1, 5))


# -- Amazon Review: TSV, JSON lines, and the sample cache ----------------------------------

@pytest.fixture(scope="module")
def amazon(tmp_path_factory) -> dict[str, Path]:
  from tools import amazon_fixture as F
  rows = F.ratings(seed=0, n_books=160, per_product=8)
  base = tmp_path_factory.mktemp("amazon")
  F.write_tsv(base / "tsv", rows, malformed=False)
  F.write_json(base / "json", rows)
  return {"tsv": base / "tsv", "json": base / "json"}


def _amazon_cfg():
  from tests.harness import smoke_config
  return smoke_config("amazon_reviews", **{"data.amazon_reviews.max_bad_fraction": 0.2}
                      ).data.amazon_reviews


def _amazon_read(folder: Path, cache: Path):
  from datasets import amazon as A
  c = _amazon_cfg()
  with env(LEVI_CACHE=str(cache)):
    df, stats = A.load_rows(str(folder), c)
    s = A.to_splits(df, stats, c)
    again, _ = A.load_rows(str(folder), c)   # from the cache entry just written
  pd.testing.assert_frame_equal(df, again)
  return s


@FUZZ
@given(fmt=st.sampled_from(["tsv", "json"]), which=st.integers(0, 15), as_text=st.booleans(),
       ops=MUTATIONS)
def test_amazon_files(amazon, fmt, which, as_text, ops):
  import shutil
  with scratch() as d:
    folder = d / fmt
    shutil.copytree(amazon[fmt], folder)
    names = sorted(p.name for p in folder.iterdir())
    _write_mutated(folder, names[which % len(names)], ops, as_text)
    s = read_or_user_error(lambda: _amazon_read(folder, d / "cache"), folder)
    if s is not None:
      check_splits(s, (1, 5))
      assert len(s.train) and len(s.val)


@pytest.fixture(scope="module")
def amazon_sample(amazon, tmp_path_factory):
  """The TSV fixture's sample and its cache entry's bytes."""
  from datasets import amazon as A
  cache = tmp_path_factory.mktemp("amazon_cache")
  with env(LEVI_CACHE=str(cache)):
    df, stats = A.load_rows(str(amazon["tsv"]), _amazon_cfg())
  (entry,) = (cache / "amazon").glob("*.json")
  return df, stats, entry.name, entry.read_bytes()


@FUZZ
@given(ops=MUTATIONS)
def test_amazon_cache_entry(amazon, amazon_sample, ops):
  """A damaged cache entry is rebuilt, never half-used: the sample is always
  the one the files give."""
  from datasets import amazon as A
  df, stats, name, good = amazon_sample
  with scratch() as d:
    entry = d / "amazon" / name
    entry.parent.mkdir()
    entry.write_bytes(mutate(good, ops))
    with env(LEVI_CACHE=str(d)), no_hang():
      got, got_stats = A.load_rows(str(amazon["tsv"]), _amazon_cfg())
    pd.testing.assert_frame_equal(got, df)
    assert got_stats == stats
    assert A.read_cache(entry)[1] == stats   # rebuilt whole


# -- IDX (Fashion-MNIST) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
  from tests.test_fashion_mnist import write_fixture
  folder = tmp_path_factory.mktemp("fmnist")
  write_fixture(folder, n_train=24, n_test=16)
  return folder


@FUZZ
@given(which=st.integers(0, 3), as_text=st.booleans(), ops=MUTATIONS)
def test_idx(fmnist, which, as_text, ops):
  import shutil

  from datasets import DATASETS
  from datasets import fashion_mnist as FM
  from tests.harness import smoke_config
  cfg = smoke_config(FM.NAME, **{f"data.{FM.NAME}.val_size": 4,
                                 f"data.{FM.NAME}.image_size": 28})
  with scratch() as d:
    folder = d / "fm"
    shutil.copytree(fmnist, folder)
    names = sorted(p.name for p in folder.iterdir())
    _write_mutated(folder, names[which], ops, as_text)
    s = read_or_user_error(lambda: DATASETS.get(FM.NAME).load(cfg, str(folder)), folder)
    if s is not None:
      check_splits(s, (0, 9))
      for part in (s.train, s.val, s.test_id, *s.ood.values()):
        assert part.large["image"].shape[1:] == (28, 28, 3)
        assert part.large["image"].dtype == np.uint8


# -- .pth, both formats -----------------------------------------------------------------

LITE0_LIKE = {"_conv_stem.weight": np.arange(108, dtype=np.float32).reshape(4, 3, 3, 3),
              "_bn0.running_mean": np.linspace(-1, 1, 4).astype(np.float32),
              "_bn0.num_batches_tracked": np.array(7, np.int64),
              "_fc.weight": np.ones((2, 4), np.float32), "_fc.bias": np.zeros(2, np.float32)}


def _plain(obj) -> bool:
  if isinstance(obj, dict):
    return all(_plain(k) and _plain(v) for k, v in obj.items())
  if type(obj) in (list, tuple, set, frozenset):
    return all(_plain(v) for v in obj)
  return isinstance(obj, (np.ndarray, int, float, complex, str, bytes, bytearray,
                          bool, type(None)))


@FUZZ40
@given(fmt=st.sampled_from(["legacy", "zip"]), ops=MUTATIONS)
def test_pth(fmt, ops):
  from benchmark.models import efficientnet as E
  from benchmark.models import torch_pickle
  good = PF.legacy_bytes(LITE0_LIKE) if fmt == "legacy" else PF.zip_bytes(LITE0_LIKE)
  with scratch() as d:
    path = PF.write(d / "w.pth", mutate(good, ops))
    sd = read_or_user_error(lambda: torch_pickle.load(path), path)
    if sd is not None:
      assert _plain(sd)   # arrays and plain values only: nothing of the reader's leaks out
      read_or_user_error(lambda: E._check_lite0_file.__wrapped__(str(path), "x"), path)


# -- .npz: the store's arrays and a ViT checkpoint ----------------------------------------

STORE_ARRAYS = {"large/blocks/0/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
                "state:count": np.array(5, np.int32), "mask": np.array([True, False]),
                "empty": np.zeros((0, 3)), "fortran": np.asfortranarray(np.ones((2, 3)))}


@FUZZ40
@given(ops=MUTATIONS)
def test_store_npz(ops):
  from benchmark.store import RunStore
  with scratch() as d:
    path = d / "k.npz"
    RunStore.write_arrays(path, STORE_ARRAYS)
    path.write_bytes(mutate(path.read_bytes(), ops))
    got = read_or_user_error(lambda: RunStore.read_arrays(path), path)
    if got is not None:
      for k, v in got.items():
        assert isinstance(v, np.ndarray)
        if k in STORE_ARRAYS:   # the data are CRC-checked: never a changed array
          assert v.dtype == STORE_ARRAYS[k].dtype
          np.testing.assert_array_equal(v, STORE_ARRAYS[k])


@pytest.fixture(scope="module")
def vit_tiny():
  import dataclasses

  from flax import nnx

  from benchmark.models.vit import ViT, ViTConfig
  from tests.vit_files import augreg_from_ours
  cfg = dataclasses.replace(ViTConfig.ti16(), num_layers=1, image_size=32)
  model = ViT(cfg, rngs=nnx.Rngs(0))
  return model, augreg_from_ours(model)


_DTYPES = st.sampled_from(["float32", "float64", "float16", "int8", "int64", "bool", "<U3",
                           "complex64", ">f4"])
_SHAPES = st.lists(st.integers(0, 4), max_size=4).map(tuple)


@FUZZ
@given(compressed=st.booleans(), ops=MUTATIONS,
       swaps=st.lists(st.tuples(st.integers(0, 99), st.sampled_from(["drop", "shape", "dtype"]),
                                _DTYPES, _SHAPES), max_size=3))
def test_vit_npz(vit_tiny, compressed, ops, swaps):
  """Bytes mutated, or (``swaps``) arrays under the right names dropped or
  replaced by arrays of another shape, or of the right shape and another
  dtype."""
  from flax import nnx

  from benchmark.models import params as P
  from benchmark.models.vit import ViT, load_vit
  model, bv = vit_tiny
  arrays = dict(bv)
  names = sorted(arrays)
  for i, how, dtype, shape in swaps:
    name = names[i % len(names)]
    if how == "drop":
      arrays.pop(name, None)
    elif name in arrays:
      arrays[name] = np.zeros(shape if how == "shape" else arrays[name].shape, dtype)
  with scratch() as d:
    path = d / "vit.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    if not swaps:
      path.write_bytes(mutate(path.read_bytes(), ops))
    target = ViT(model.cfg, rngs=nnx.Rngs(1))
    if read_or_user_error(lambda: load_vit(target, path) or True, path):
      for k, v in P.flat_params(target).items():
        assert np.isfinite(np.asarray(v, np.float64)).all(), k


# -- safetensors ----------------------------------------------------------------------

@FUZZ40
@given(ops=MUTATIONS)
def test_safetensors(ops):
  from safetensors.numpy import save_file

  from benchmark.models import params as P
  from benchmark.models.backbone import check_safetensors
  arrays = {"embeddings.word_embeddings.weight": np.arange(12, dtype=np.float32).reshape(4, 3),
            "pooler.dense.bias": np.zeros(3, np.float32), "ids": np.arange(5, dtype=np.int64)}
  with scratch() as d:
    path = d / "model.safetensors"
    save_file(arrays, str(path))
    path.write_bytes(mutate(path.read_bytes(), ops))
    checked = read_or_user_error(lambda: check_safetensors(str(path)) or True, path)
    got = read_or_user_error(lambda: P.read_safetensors(path, "MiniLM"), path)
    if got is not None:
      assert checked, "read_safetensors read a file check_safetensors refused"
      for k, v in got[1].items():
        assert isinstance(v, np.ndarray)


# -- store JSON records ---------------------------------------------------------------

@FUZZ40
@given(ops=MUTATIONS)
def test_store_record(ops):
  """A record reads back whole and unchanged, or is set aside (kept as it
  was) and treated as absent; never an exception, never a changed record."""
  import contextlib as cl
  import io

  from benchmark.store import CHECKSUM, RunStore
  with scratch() as d:
    store = RunStore(d)
    path = store.component_path("ft", "k")
    store.write(path, {"kind": "ft", "key": "k", "seed": 0, "status": "ok",
                       "config": {"lr": 1e-3, "epochs": 2}, "scores": {"val": 0.5,
                                                                       "ood/g1": 1.25}})
    good = store.read(path)
    bad = mutate(path.read_bytes(), ops)
    path.write_bytes(bad)
    with cl.redirect_stderr(io.StringIO()), no_hang():
      back = store.read(path)
    if back is None:
      assert not path.exists()
      assert [p.read_bytes() for p in store.set_aside] == [bad]
    else:
      # Unchanged, or (the checksum's own name hit) read as a record from
      # before checksums, whose content no hash vouches for.
      assert back == good or CHECKSUM not in back, back


# -- the tabular CSV ------------------------------------------------------------------

def _tabular_csv() -> bytes:
  rng = np.random.default_rng(0)
  splits = (["pretrain"] * 8 + ["train"] * 10 + ["val"] * 4 + ["test_id"] * 4
            + ["ood:g1"] * 3 + ["ood:g2"] * 3 + ["aux:t:train"] * 3 + ["aux:t:val"] * 2)
  lines = ["num_a,cat_b,label,split"]
  for i, s in enumerate(splits):
    lines.append(f"{rng.normal():.4f},{'xyz'[i % 3]},{i % 2},{s}")
  return ("\n".join(lines) + "\n").encode()


@FUZZ
@given(mode=st.sampled_from(["plain", "gz_content", "gz_bytes"]), ops=MUTATIONS)
def test_tabular_csv(mode, ops):
  """The CSV mutated as text (plain or then gzipped), or its gzip bytes."""
  from datasets import DATASETS
  from tests.harness import smoke_config
  cfg = smoke_config("tabular")
  with scratch() as d:
    path = d / ("t.csv" if mode == "plain" else "t.csv.gz")
    good = _tabular_csv()
    data = {"plain": lambda: mutate(good, ops),
            "gz_content": lambda: gzip.compress(mutate(good, ops), mtime=0),
            "gz_bytes": lambda: mutate(gzip.compress(good, mtime=0), ops)}[mode]()
    path.write_bytes(data)
    s = read_or_user_error(lambda: DATASETS.get("tabular").load(cfg, str(path)), path)
    if s is not None:
      check_splits(s)
      for part in (s.train, s.val, s.test_id, *s.ood.values()):
        for v in part.large.values():
          assert np.isfinite(np.asarray(v, np.float64)).all()


# -- what the fuzzing found, pinned ------------------------------------------------------

def _set_field(data: bytes, line: int, field: int, value: bytes, sep: bytes = b"|") -> bytes:
  lines = data.splitlines(keepends=True)
  parts = lines[line].split(sep)
  parts[field] = value
  lines[line] = sep.join(parts)
  return b"".join(lines)


@pytest.mark.parametrize("name,edit,why", [
    ("u.data", lambda b: b"", "u.data: unreadable"),                     # EmptyDataError
    ("u.user", lambda b: _set_field(b, 0, 1, b"2x"), "age '2x' is not a number"),  # ValueError
    ("u.user", lambda b: b + b.splitlines(keepends=True)[0], "listed twice"),  # ratings copied
    ("u.item", lambda b: b + b.splitlines(keepends=True)[0], "listed twice"),
], ids=["empty_u_data", "age_not_a_number", "user_twice", "movie_twice"])
def test_grouplens_found(grouplens, tmp_path, name, edit, why):
  import shutil

  from benchmark.errors import DataError
  from datasets import movielens as M
  folder = tmp_path / "ml-100k"
  shutil.copytree(grouplens, folder)
  (folder / name).write_bytes(edit((folder / name).read_bytes()))
  with pytest.raises(DataError, match=why):
    M.load_frame(str(folder))


def test_tabular_empty_split_found(tmp_path):
  """An empty ``split`` cell raised AttributeError ('float' has no startswith)."""
  from benchmark.errors import DataError
  from datasets import tabular
  path = tmp_path / "t.csv"
  path.write_bytes(_tabular_csv() + b"0.5,x,1,\n")
  with pytest.raises(DataError, match=r"empty split on line 39"):
    tabular.frame_to_splits(tabular.read_csv(str(path)), "tabular", source=str(path))


@pytest.mark.parametrize("edit,why", [
    ("label_10", "labels outside 0-9"),          # trained on silently as an 11th class
    ("27x28", "images of 27x28 pixels"),         # reshape error in the lowres shift
], ids=["label_10", "27x28"])
def test_idx_found(fmnist, tmp_path, edit, why):
  import shutil

  from datasets import DATASETS
  from datasets import fashion_mnist as FM
  from tests.harness import smoke_config
  from tests.test_fashion_mnist import write_idx
  folder = tmp_path / "fm"
  shutil.copytree(fmnist, folder)
  if edit == "label_10":
    write_idx(folder / "train-labels-idx1-ubyte", np.full(24, 10))
  else:
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((24, 27, 28)))
  cfg = smoke_config(FM.NAME, **{f"data.{FM.NAME}.val_size": 4,
                                 f"data.{FM.NAME}.image_size": 28})
  with pytest.raises(UserError, match=why):
    DATASETS.get(FM.NAME).load(cfg, str(folder))


@pytest.mark.parametrize("name,value,why", [
    ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel",
     np.zeros(()), r"query/kernel has shape \(\), not an attention kernel's"),   # IndexError
    ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel",
     np.zeros((0,)), r"out/kernel has shape \(0,\)"),                             # ValueError
    ("cls", None, "holds <U3 values, not numbers"),                              # ValueError
], ids=["scalar_kernel", "empty_kernel", "strings"])
def test_vit_npz_found(vit_tiny, tmp_path, name, value, why):
  from flax import nnx

  from benchmark.models.vit import ViT, load_vit
  model, bv = vit_tiny
  arrays = dict(bv)
  arrays[name] = np.zeros(arrays[name].shape, "<U3") if value is None else value
  np.savez(tmp_path / "v.npz", **arrays)
  with pytest.raises(UserError, match=why) as e:
    load_vit(ViT(model.cfg, rngs=nnx.Rngs(1)), tmp_path / "v.npz")
  assert "\n" not in str(e.value)
