"""The tabular schema: ``frame_to_splits`` on a hand-made frame, and the
synthetic benchmark through a CSV and the ``tabular`` loader."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark import setup
from benchmark.data import CLASSIFICATION, REGRESSION
from benchmark.errors import DataError
from datasets import synthetic_spurious, tabular


def hand_frame() -> pd.DataFrame:
  # cat_color: "red", "blue" in pretrain/train; "green" only in val; "pink"
  # only in ood. cat_size: "S" only in pretrain (still in the vocab).
  rows = [
      # split,       cat_color, cat_size, num_a, num_b, label
      ("pretrain",   "red",     "S",      10.0,   0.0,  "dog"),
      ("pretrain",   "blue",    "M",      20.0,   1.0,  "cat"),
      ("train",      "red",     "M",       1.0,   2.0,  "dog"),
      ("train",      "blue",    "L",       3.0,   4.0,  "cat"),
      ("train",      "red",     "L",       5.0,  12.0,  "bird"),
      ("val",        "green",   "M",       3.0,   6.0,  "cat"),
      ("test_id",    "blue",    "L",       7.0,   6.0,  "dog"),
      ("ood:zeta",   "pink",    "XL",      9.0,   6.0,  "bird"),
      ("ood:alpha",  "red",     "S",      -1.0,   0.0,  "cat"),
      ("ood:alpha",  "blue",    "M",       1.0,   6.0,  "dog"),
  ]
  df = pd.DataFrame(rows, columns=["split", "cat_color", "cat_size", "num_a", "num_b",
                                   "label"])
  return df


def test_categorical_vocab_from_pretrain_and_train_unseen_is_zero():
  s = tabular.frame_to_splits(hand_frame(), "hand")
  assert s.info.extra["columns"] == {"num": ["num_a", "num_b"],
                                     "cat": ["cat_color", "cat_size"]}
  # Sorted vocab of pretrain+train values, ids from 1; 0 = unseen.
  color = {"blue": 1, "red": 2}
  size = {"L": 1, "M": 2, "S": 3}
  assert s.info.large_spec["cat_vocab"] == (len(color) + 1, len(size) + 1)
  assert s.info.small_spec == s.info.large_spec

  def ids(pairs):
    return np.array([[color.get(c, 0), size.get(z, 0)] for c, z in pairs], np.int32)

  np.testing.assert_array_equal(s.pretrain.large["cat"], ids([("red", "S"), ("blue", "M")]))
  np.testing.assert_array_equal(
      s.train.large["cat"], ids([("red", "M"), ("blue", "L"), ("red", "L")]))
  np.testing.assert_array_equal(s.val.large["cat"], [[0, 2]])          # green unseen
  np.testing.assert_array_equal(s.test_id.large["cat"], [[1, 1]])
  np.testing.assert_array_equal(s.ood["zeta"].large["cat"], [[0, 0]])  # pink, XL unseen
  np.testing.assert_array_equal(s.ood["alpha"].large["cat"], [[2, 3], [1, 2]])
  assert s.train.large["cat"].dtype == np.int32
  # Both views are the same columns.
  for split in (s.train, s.val, s.test_id, s.pretrain, *s.ood.values()):
    for k in split.large:
      np.testing.assert_array_equal(split.large[k], split.small[k])


def test_numeric_standardised_with_train_statistics():
  df = hand_frame()
  s = tabular.frame_to_splits(df, "hand")
  train = df[df["split"] == "train"][["num_a", "num_b"]].to_numpy(np.float64)
  mu, sd = train.mean(0), train.std(0)   # train rows only (not pretrain)
  np.testing.assert_allclose(mu, [3.0, 6.0])

  def std(split):
    x = df[df["split"] == split][["num_a", "num_b"]].to_numpy(np.float64)
    return ((x - mu) / sd).astype(np.float32)

  assert s.train.large["num"].dtype == np.float32
  np.testing.assert_allclose(s.train.large["num"].mean(0), 0.0, atol=1e-6)
  np.testing.assert_allclose(s.train.large["num"].std(0), 1.0, rtol=1e-6)
  for name, split in (("pretrain", s.pretrain), ("train", s.train), ("val", s.val),
                      ("test_id", s.test_id), ("ood:alpha", s.ood["alpha"]),
                      ("ood:zeta", s.ood["zeta"])):
    np.testing.assert_allclose(split.large["num"], std(name), rtol=1e-6, err_msg=name)
  np.testing.assert_allclose(s.val.large["num"], [[0.0, 0.0]], atol=1e-7)

  raw = tabular.frame_to_splits(df, "hand", standardize=False)
  np.testing.assert_array_equal(raw.pretrain.large["num"], [[10.0, 0.0], [20.0, 1.0]])


def test_constant_train_column_is_not_divided_by_zero():
  df = hand_frame()
  df.loc[df["split"] == "train", "num_b"] = 4.0
  s = tabular.frame_to_splits(df, "hand")
  assert np.all(np.isfinite(s.val.large["num"]))
  np.testing.assert_allclose(s.train.large["num"][:, 1], 0.0)
  np.testing.assert_allclose(s.val.large["num"][:, 1], 2.0)   # 6 - 4, scale 1


def test_ood_groups_named_from_split_values():
  s = tabular.frame_to_splits(hand_frame(), "hand")
  assert sorted(s.ood) == ["alpha", "zeta"]
  assert len(s.ood["alpha"]) == 2 and len(s.ood["zeta"]) == 1
  assert list(s.eval_splits()) == ["val", "test_id", "ood/alpha", "ood/zeta"]
  assert (len(s.pretrain), len(s.train), len(s.val), len(s.test_id)) == (2, 3, 1, 1)


def test_classification_labels_mapped_to_0_to_c_minus_1():
  df = hand_frame()
  s = tabular.frame_to_splits(df, "hand")
  assert s.info.task == CLASSIFICATION and s.info.metric == "acc"
  assert s.info.num_classes == 3
  classes = s.info.extra["classes"]
  assert sorted(classes) == ["bird", "cat", "dog"]
  index = {c: i for i, c in enumerate(classes)}
  for name, split in (("train", s.train), ("pretrain", s.pretrain),
                      ("ood:alpha", s.ood["alpha"])):
    assert split.label.dtype == np.int32
    expected = [index[v] for v in df[df["split"] == name]["label"]]
    np.testing.assert_array_equal(split.label, expected)
  all_labels = np.concatenate([x.label for x in (s.pretrain, s.train, s.val, s.test_id,
                                                  *s.ood.values())])
  assert set(all_labels.tolist()) == {0, 1, 2}

  # Integer labels: the classes 0..C-1 are the labels themselves.
  df["label"] = df["label"].map({"bird": 0, "cat": 1, "dog": 2})
  s = tabular.frame_to_splits(df, "hand")
  assert s.info.task == CLASSIFICATION
  np.testing.assert_array_equal(s.train.label, df[df["split"] == "train"]["label"])


def test_auto_task_picks_regression_for_non_integer_floats():
  df = hand_frame()
  df["label"] = np.linspace(0.5, 5.0, len(df))       # non-integer floats
  s = tabular.frame_to_splits(df, "hand", task="auto")
  assert s.info.task == REGRESSION and s.info.num_classes == 1
  assert s.info.metric == "rmse" and s.info.out_dim == 1
  assert s.train.label.dtype == np.float32
  np.testing.assert_allclose(s.train.label, df[df["split"] == "train"]["label"], rtol=1e-6)

  df["label"] = np.arange(len(df)) % 2 * 1.0          # integral floats: classes
  assert tabular.frame_to_splits(df, "hand", task="auto").info.task == CLASSIFICATION


def test_frame_errors_are_data_errors():
  df = hand_frame()
  with pytest.raises(DataError, match="label"):
    tabular.frame_to_splits(df.drop(columns="label"), "hand")
  bad = df.copy()
  bad.loc[0, "split"] = "holdout"
  with pytest.raises(DataError, match="holdout"):
    tabular.frame_to_splits(bad, "hand")


# -- synthetic_spurious through a CSV and the tabular loader -------------------

def full_config(preset: str = "smoke"):
  """The config as run_benchmark.py builds it (registries' defaults)."""
  base = setup.base_config()
  base.data.tabular.task = "classification"
  base.data.tabular.standardize = False
  return setup.resolve_config("synthetic_spurious", preset, base=base)


def _split_items(s):
  out = [("train", s.train), ("val", s.val), ("test_id", s.test_id),
         ("pretrain", s.pretrain)]
  out += [(f"ood/{g}", x) for g, x in sorted(s.ood.items())]
  out += [(f"aux/{n}/{part}", getattr(a, part)) for n, a in sorted(s.aux.items())
          for part in ("train", "val")]
  return out


def test_synthetic_through_csv_equals_direct_loader(tmp_path):
  config = full_config()
  c = config.data.synthetic_spurious
  df = synthetic_spurious.generate(int(c.n), float(c.rho_x), float(c.rho_s), int(c.seed))
  csv = tmp_path / "synthetic.csv"
  df.to_csv(csv, index=False)

  direct = synthetic_spurious.load(config, None)
  via_csv = tabular.load(config, str(csv))

  assert direct.info.task == via_csv.info.task == CLASSIFICATION
  assert direct.info.num_classes == via_csv.info.num_classes
  assert direct.info.large_spec == via_csv.info.large_spec
  assert direct.info.small_spec == via_csv.info.small_spec
  assert sorted(direct.ood) == sorted(via_csv.ood)
  a_items, b_items = _split_items(direct), _split_items(via_csv)
  assert [n for n, _ in a_items] == [n for n, _ in b_items]
  for (name, a), (_, b) in zip(a_items, b_items):
    assert a is not None and b is not None, name
    for view in ("large", "small"):
      av, bv = getattr(a, view), getattr(b, view)
      assert sorted(av) == sorted(bv), (name, view)
      for k in av:
        assert av[k].dtype == bv[k].dtype, (name, view, k)
        np.testing.assert_array_equal(av[k], bv[k], err_msg=f"{name} {view} {k}")
    assert a.label.dtype == b.label.dtype, name
    np.testing.assert_array_equal(a.label, b.label, err_msg=f"{name} label")


def test_aux_rows_are_auxiliary_tasks_with_their_own_labels():
  df = hand_frame()
  df["label"] = [1.5, 2.5, 3.0, 4.5, 5.0, 2.0, 3.5, 4.0, 1.0, 2.5]   # regression target
  aux = pd.DataFrame([("aux:kind:train", "red", "S", 0.0, 0.0, "dog"),
                      ("aux:kind:train", "blue", "M", 1.0, 0.0, "cat"),
                      ("aux:kind:val", "red", "M", 2.0, 1.0, "cat"),
                      ("aux:size:train", "red", "M", 2.0, 1.0, 3),
                      ("aux:size:val", "red", "M", 2.0, 1.0, 7)], columns=df.columns)
  with_aux = pd.concat([df, aux], ignore_index=True)
  plain, s = tabular.frame_to_splits(df, "h"), tabular.frame_to_splits(with_aux, "h")
  assert s.info.task == REGRESSION                  # aux labels do not change the target's
  assert s.fingerprint() == plain.fingerprint()     # nor its splits
  assert sorted(s.aux) == ["kind", "size"]
  k = s.aux["kind"]
  assert (k.task, k.num_classes, k.out_dim) == (CLASSIFICATION, 2, 2)
  np.testing.assert_array_equal(k.train.label, [1, 0])   # cat=0, dog=1
  np.testing.assert_array_equal(k.val.label, [0])
  assert len(s.aux["size"].train) == 1 and s.aux["size"].num_classes == 2
  # Features encoded as the target's are (numbers standardised with ID train
  # statistics; "red" keeps its id).
  assert k.train.large["num"][0, 0] == pytest.approx((0.0 - 3.0) / np.std([1.0, 3.0, 5.0]))
  assert k.train.small["cat"][0, 0] == s.train.small["cat"][0, 0]
  assert k.fingerprint() != s.aux["size"].fingerprint()
  with pytest.raises(DataError, match="auxiliary task 'kind' has no aux:kind:val rows"):
    tabular.frame_to_splits(with_aux[with_aux.split != "aux:kind:val"], "h")
  with pytest.raises(DataError, match="aux:<task>:train / aux:<task>:val"):
    tabular.frame_to_splits(pd.concat([df, aux.assign(split="aux:kind:test")]), "h")
