"""RunStore: atomic records, corrupt records set aside, arrays, keys."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.store import RunStore, key_of


def test_write_read_roundtrip(tmp_path):
  store = RunStore(tmp_path / "wd")
  path = store.method_path("toy", "ft", "abc123")
  rec = {"method": "ft", "seed": 3, "scores": {"val": 0.25, "ood/g1": 1.5},
         "n_examples": {"val": 10}, "status": "ok", "tuple": (1, 2),
         "np_float": np.float32(0.5), "np_int": np.int64(7)}
  store.write(path, rec)
  assert path.is_file()
  assert path.parent == tmp_path / "wd" / "runs" / "methods" / "toy" / "ft"
  # Atomic: no temporary file is left next to the record.
  assert sorted(p.name for p in path.parent.iterdir()) == ["abc123.json"]
  back = store.read(path)
  assert back is not None
  for k in ("method", "seed", "scores", "n_examples", "status"):
    assert back[k] == rec[k]
  assert back["tuple"] == [1, 2]
  assert back["np_float"] == 0.5 and back["np_int"] == 7
  assert "written_at" in back and "versions" in back
  # The file itself is plain JSON.
  assert json.loads(path.read_text()) == back


def test_write_replaces_existing_record(tmp_path):
  store = RunStore(tmp_path)
  path = store.component_path("ft", "k")
  store.write(path, {"v": 1})
  store.write(path, {"v": 2})
  assert store.read(path)["v"] == 2
  assert [p.name for p in path.parent.iterdir()] == ["k.json"]


def test_read_missing_is_none(tmp_path):
  store = RunStore(tmp_path)
  assert store.read(store.component_path("ft", "nope")) is None
  assert store.set_aside == []


@pytest.mark.parametrize("content", [
    b'{"method": "ft", "scores": {',   # truncated JSON
    b"not json at all",
    b"[1, 2, 3]",                       # JSON, but not a record (object)
    b"",                                # empty file
    b'\xff\xfe{"a": 1}\x00\x9c',       # binary garbage: not even UTF-8
], ids=["truncated", "text", "list", "empty", "binary"])
def test_corrupt_record_is_set_aside(tmp_path, content, capsys):
  store = RunStore(tmp_path)
  path = store.component_path("ft", "k")
  path.parent.mkdir(parents=True)
  path.write_bytes(content)

  assert store.read(path) is None

  assert not path.exists()
  aside = [p for p in path.parent.iterdir() if p.name.startswith("k.json.corrupt-")]
  assert len(aside) == 1, list(path.parent.iterdir())
  assert aside[0].read_bytes() == content          # kept as it was, for inspection
  assert store.set_aside == aside
  assert "warning" in capsys.readouterr().err
  # Treated as absent: a new record can be written and read back.
  store.write(path, {"v": 1})
  assert store.read(path)["v"] == 1


def test_record_edited_or_damaged_behind_its_checksum_is_set_aside(tmp_path, capsys):
  """Valid JSON is not enough: a score changed in place (a flipped digit, a
  hand edit) no longer matches the record's checksum and is recomputed."""
  store = RunStore(tmp_path)
  path = store.component_path("ft", "k")
  store.write(path, {"status": "ok", "scores": {"val": 0.25}})
  assert "checksum" in json.loads(path.read_text())
  path.write_text(path.read_text().replace("0.25", "0.75"))
  assert store.read(path) is None
  assert "does not match its checksum" in capsys.readouterr().err
  # Records from before checksums are read as they are.
  path.write_text(json.dumps({"status": "ok", "scores": {"val": 0.5}}))
  assert store.read(path)["scores"] == {"val": 0.5}


def test_arrays_roundtrip(tmp_path):
  arrays = {
      "large/blocks/0/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
      "large/blocks/0/bias": np.array([-1.5, 0.0, 2.25, 1e-30], np.float32),
      "state:count": np.array(5, np.int32),            # 0-d
      "ids": np.array([[0, 3], [2, 1]], np.int64),
      "mask": np.array([True, False, True]),
      "empty": np.zeros((0, 3), np.float64),
  }
  path = tmp_path / "runs" / "components" / "ft" / "k.npz"
  RunStore.write_arrays(path, arrays)
  assert [p.name for p in path.parent.iterdir()] == ["k.npz"]
  back = RunStore.read_arrays(path)
  assert set(back) == set(arrays)
  for k, v in arrays.items():
    assert back[k].dtype == v.dtype, k
    assert back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v)


@pytest.mark.parametrize("cut", ["truncated_npz", "text"])
def test_unreadable_arrays_is_user_error(tmp_path, cut):
  """``read_arrays`` promises a one-line UserError for a file it cannot read."""
  from benchmark.errors import UserError
  path = tmp_path / "k.npz"
  RunStore.write_arrays(path, {"a": np.arange(100)})
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2] if cut == "truncated_npz" else b"garbage")
  with pytest.raises(UserError, match="delete it"):
    RunStore.read_arrays(path)


def test_key_of_is_order_independent():
  assert key_of({"a": 1, "b": 2}) == key_of({"b": 2, "a": 1})
  nested1 = {"config": {"lr": 1e-3, "epochs": 3}, "deps": {"x": "k1", "y": "k2"}, "seed": 0}
  nested2 = {"seed": 0, "deps": {"y": "k2", "x": "k1"}, "config": {"epochs": 3, "lr": 1e-3}}
  assert key_of(nested1) == key_of(nested2)


def test_key_of_differs_for_different_content():
  base = {"a": 1, "b": 2}
  keys = {key_of(base), key_of({"a": 1, "b": 3}), key_of({"a": 1}),
          key_of({"a": 1, "b": 2, "c": None}), key_of({"a": 2, "b": 1}),
          key_of({"a": "1", "b": 2}), key_of([1, 2])}
  assert len(keys) == 7
  assert key_of(base) == key_of(dict(base))        # deterministic
  assert len(key_of(base)) == 20 and all(c in "0123456789abcdef" for c in key_of(base))
