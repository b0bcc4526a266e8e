"""Method results as tidy frames, and how sure they are: bootstrap intervals
over test examples and seeds, and paired comparisons between rows.

``load(workdir, ...)`` reads every method record of a store into one tidy
frame, a row per (method, seed, split); ``compare(frame, reference=...)``
gives, per (dataset, method, split), the mean over seeds, its confidence
interval, and the paired difference with the reference row and with the
best row. The tables (``benchmark.tables``, ``benchmark.paper_tables``) are
built from these two functions.

Splits. Besides the stored ones (``val``, ``test_id``, ``ood/<group>``),
each OOD aggregate (``ood``, ``ood/<family>s``, see ``ood_aggregates``) is
the unweighted mean over its groups, as in the paper; ``<agg>:weighted`` is
the example-weighted one (the metric over all the groups' examples pooled)
and ``<agg>:worst`` the worst group, both per seed. Groups with fewer than
``min_group_size`` examples (and those a dataset excludes) stay out of the
aggregates.

The bootstrap. A replicate resamples, with replacement, the examples of
every split (``n`` of ``n``) and the seeds (``S`` of ``S``), and recomputes
every cell from the per-example predictions stored beside the method records
(``protocol.preds_path``). ``paired=True`` (the default) draws one resample
for every method, since they all predict the same examples: a difference
between two rows is then measured on the same draws, which removes the
examples' shared difficulty from its interval. Intervals are percentile
intervals. A method whose predictions are not stored gets no interval.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark import metrics

TIDY_COLUMNS = ["dataset", "method", "seed", "split", "metric", "value", "n_examples",
                "status", "preset", "config_digest", "key", "record"]
LOWER_IS_BETTER = {"rmse"}
MIN_GROUP_SIZE = 30   # report.min_group_size's default


# -- splits -------------------------------------------------------------------
def ood_aggregates(keys: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, list[str]]:
  """Aggregate splits -> the OOD groups they average, unweighted (how the
  paper's Table 1 follows from its per-group Tables 9-11).

  Groups ``ood/<family>/<name>`` (e.g. ``ood/product/Watches``) average into
  ``ood/<family>s`` (``ood/products``). ``ood`` averages the single-level
  groups (e.g. twelve genres) and exists only when there is no family: a
  dataset with a family and a single-level group (``ood/time``) reports them
  apart, as the paper does. Groups in ``exclude`` (names such as ``Western``
  or ``product/Baby``, or split keys) stay out of every aggregate."""
  out_of = set(exclude) | {f"ood/{e}" for e in exclude}
  singles = [k for k in keys if k.startswith("ood/") and k.count("/") == 1]
  families: dict[str, list[str]] = {}
  for k in keys:
    if k.startswith("ood/") and k.count("/") == 2:
      families.setdefault(f"ood/{k.split('/')[1]}s", []).append(k)
  out = {"ood": singles} if singles and not families else {}
  out.update(families)
  out = {a: [k for k in members if k not in out_of] for a, members in out.items()}
  return {a: members for a, members in out.items() if members}


def small_groups(n_examples: Mapping[str, int], min_group_size: int) -> list[str]:
  """OOD groups with fewer than ``min_group_size`` examples (0: none)."""
  return [k for k, n in n_examples.items()
          if k.startswith("ood/") and min_group_size > 0 and n < min_group_size]


def summaries(keys: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, tuple[str, list[str]]]:
  """Derived split -> (how, members): each aggregate (``mean``), and, when it
  has two or more groups, its ``:weighted`` and ``:worst`` companions."""
  out = {}
  for agg, members in ood_aggregates(keys, exclude).items():
    out[agg] = ("mean", members)
    if len(members) > 1:
      out[f"{agg}:weighted"] = ("weighted", members)
      out[f"{agg}:worst"] = ("worst", members)
  return out


def _derive(how: str, metric: str, stats: list, n: list[int]):
  """A derived split's value from its groups' (``stats``; arrays or floats)."""
  if how == "mean":
    return sum(stats) / len(stats)
  if how == "worst":
    return (np.maximum if metric in LOWER_IS_BETTER else np.minimum).reduce(
        np.stack([np.asarray(s, np.float64) for s in stats]))
  # weighted: the metric over the pooled examples
  if metric == "rmse":
    return np.sqrt(sum(ni * np.asarray(s, np.float64) ** 2 for s, ni in zip(stats, n)) / sum(n))
  return sum(ni * np.asarray(s, np.float64) for s, ni in zip(stats, n)) / sum(n)


# -- tidy frames -------------------------------------------------------------
def record_rows(rec: Mapping, exclude: Sequence[str] = (),
                min_group_size: int = MIN_GROUP_SIZE, path: str = "") -> list[dict]:
  """One method record as tidy rows: its stored splits and the derived ones."""
  base = {"dataset": rec["dataset"], "method": rec["method"], "seed": int(rec["seed"]),
          "metric": rec.get("metric", ""), "status": rec.get("status", ""),
          "preset": rec.get("preset"), "config_digest": rec.get("config_digest"),
          "key": rec.get("key"), "record": path}
  scores, n_ex = rec.get("scores", {}), rec.get("n_examples", {})
  rows = [{**base, "split": k, "value": float(v), "n_examples": int(n_ex.get(k, 0))}
          for k, v in scores.items()]
  out_of = [*exclude, *small_groups(n_ex, min_group_size)]
  for name, (how, members) in summaries(list(scores), out_of).items():
    value = _derive(how, base["metric"], [scores[k] for k in members],
                    [int(n_ex.get(k, 0)) for k in members])
    rows.append({**base, "split": name, "value": float(value),
                 "n_examples": int(sum(n_ex.get(k, 0) for k in members))})
  return rows


def tidy(records: Sequence[Mapping], exclude: Sequence[str] = (),
         min_group_size: int = MIN_GROUP_SIZE,
         paths: Sequence[str | Path] | None = None) -> pd.DataFrame:
  """Records (and the files they were read from) -> the tidy frame. Failed
  runs keep one row (split ``""``, value NaN) so that they are not lost."""
  rows = []
  for i, rec in enumerate(records):
    path = str(paths[i]) if paths is not None else ""
    if rec.get("status", "ok") != "ok":
      rows.append({"dataset": rec["dataset"], "method": rec["method"],
                   "seed": int(rec["seed"]), "split": "", "metric": rec.get("metric", ""),
                   "value": np.nan, "n_examples": 0, "status": rec.get("status"),
                   "preset": rec.get("preset"), "config_digest": rec.get("config_digest"),
                   "key": rec.get("key"), "record": path})
      continue
    rows += record_rows(rec, exclude, min_group_size, path)
  return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def load(workdir: str | Path, dataset: str | None = None, preset: str | None = None,
         method: str | Sequence[str] | None = None, exclude: Sequence[str] = (),
         min_group_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
  """Every method record under ``workdir`` (the ``--workdir`` of the runs) as
  a tidy frame, optionally only one dataset's, preset's or method(s)'.
  ``config_digest`` tells configurations apart (records written before it
  was kept have None there, and no ``preset``)."""
  from benchmark.store import RunStore
  store = RunStore(workdir)
  top = store.runs / "methods"
  names = {method} if isinstance(method, str) else (set(method) if method else None)
  records, paths = [], []
  for path in sorted(top.glob("*/*/*.json")) if top.is_dir() else []:
    if dataset is not None and path.parent.parent.name != dataset:
      continue
    if names is not None and path.parent.name not in names:
      continue
    rec = store.read(path)
    if rec is None or (preset is not None and rec.get("preset") != preset):
      continue
    records.append(rec)
    paths.append(path)
  return tidy(records, exclude, min_group_size, paths)


# -- the bootstrap -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bootstrap:
  """How intervals are drawn: ``n`` replicates, ``confidence``, the random
  seed of the draws, and whether methods share them (``paired``)."""
  n: int = 1000
  confidence: float = 0.95
  seed: int = 0
  paired: bool = True


def example_weights(rng: np.random.Generator, n_rep: int, n: int,
                    chunk: int = 100) -> np.ndarray:
  """``[n_rep, n]`` counts: how often each of ``n`` examples is drawn in each
  replicate (``n`` draws with replacement)."""
  out = np.empty((n_rep, n), np.float64)
  for lo in range(0, n_rep, chunk):
    idx = rng.integers(0, n, size=(min(chunk, n_rep - lo), n))
    for j, row in enumerate(idx):
      out[lo + j] = np.bincount(row, minlength=n)
  return out


def seed_weights(rng: np.random.Generator, n_rep: int, n_seeds: int) -> np.ndarray:
  """``[n_rep, n_seeds]`` counts of each seed in each replicate."""
  return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_rep).astype(float)


def _split_stats(values: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
  """``[n_rep, rows]`` statistics of each row (``values`` ``[rows, n]``, per
  example) on each replicate's resample (``weights`` ``[n_rep, n]``)."""
  return metrics.finish(metric, weights @ values.T / values.shape[1])


def _replicates(runs: Mapping[tuple[str, int], Mapping[str, np.ndarray]],
                splits: Sequence[str], derived: Mapping[str, tuple[str, list[str]]],
                metric: str, seeds: Sequence[int], rng: np.random.Generator,
                n_rep: int) -> dict[tuple[str, str], np.ndarray]:
  """(method, split) -> ``[n_rep]`` replicate values of the seed-mean, for
  the (method, seed) ``runs`` given (their per-example values by split), all
  on the same draws."""
  order = list(runs)
  per_run: dict[str, np.ndarray] = {}   # split -> [n_rep, len(order)]
  sizes = {}
  for k in splits:
    values = np.stack([runs[r][k] for r in order])
    sizes[k] = values.shape[1]
    per_run[k] = _split_stats(values, example_weights(rng, n_rep, values.shape[1]), metric)
  for name, (how, members) in derived.items():
    per_run[name] = _derive(how, metric, [per_run[k] for k in members],
                            [sizes[k] for k in members])
  c = seed_weights(rng, n_rep, len(seeds))
  pos = {s: i for i, s in enumerate(seeds)}
  out = {}
  for m in dict.fromkeys(m for m, _ in order):
    cols = [i for i, (mm, _) in enumerate(order) if mm == m]
    w = c[:, [pos[order[i][1]] for i in cols]]
    tot = w.sum(axis=1, keepdims=True)
    # A replicate that drew none of this method's seeds: all of them, equally.
    w = np.where(tot > 0, w, 1.0) / np.where(tot > 0, tot, len(cols))
    for k, stats in per_run.items():
      out[(m, k)] = np.sum(stats[:, cols] * w, axis=1)
  return out


def _interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
  a = (1.0 - confidence) / 2.0
  lo, hi = np.quantile(x, [a, 1.0 - a])
  return float(lo), float(hi)


def per_example_values(frame: pd.DataFrame, splits: Sequence[str]
                       ) -> dict[tuple[str, int], dict[str, np.ndarray]]:
  """(method, seed) -> split -> per-example values (``metrics.per_example``),
  read from the predictions beside each record of ``frame`` (one dataset);
  runs without them are left out."""
  from benchmark.protocol import preds_path
  from benchmark.store import RunStore
  out = {}
  runs = frame[frame["status"] == "ok"].drop_duplicates(["method", "seed"])
  for r in runs.itertuples(index=False):
    path = Path(r.record) if r.record else None
    if path is None or not preds_path(path).exists():
      continue
    arrays = RunStore.read_arrays(preds_path(path))
    if not all(f"{k}:pred" in arrays for k in splits):
      continue
    out[(r.method, int(r.seed))] = {
        k: metrics.per_example(r.metric, arrays[f"{k}:pred"], arrays[f"{k}:label"])
        for k in splits}
  return out


def compare(frame: pd.DataFrame, reference: str | None = "ft",
            bootstrap: Bootstrap = Bootstrap(), exclude: Sequence[str] = (),
            min_group_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
  """Per (dataset, method, split) of a tidy frame: ``mean`` over seeds, its
  interval (``ci_low``, ``ci_high``), the difference with ``reference``'s
  row and its interval (``diff_ref*``, ``ref_significant``: the interval
  excludes 0), the same with the best row (``diff_best*``), and ``bold``:
  the best row and every row not significantly worse than it. The
  difference is method minus the other row, in the metric's units."""
  out = []
  for ds, part in frame[frame["split"] != ""].groupby("dataset", sort=False):
    out.append(_compare_dataset(ds, part, reference, bootstrap, exclude, min_group_size))
  cols = ["dataset", "method", "split", "metric", "mean", "ci_low", "ci_high", "reference",
          "diff_ref", "diff_ref_low", "diff_ref_high", "ref_significant", "best",
          "diff_best", "diff_best_low", "diff_best_high", "bold"]
  return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def _compare_dataset(ds, part, reference, bs: Bootstrap, exclude, min_group_size):
  metric = part["metric"].iloc[0]
  lower = metric in LOWER_IS_BETTER
  methods = list(dict.fromkeys(part["method"]))
  splits = list(dict.fromkeys(part["split"]))
  # Sorted: the draws follow this order, which must not depend on how the
  # records were read (in memory, or back from the store's sorted JSON).
  stored = sorted(k for k in splits if k == "test_id" or (
      k.startswith("ood/") and ":" not in k and k not in _aggregate_names(splits)))
  n_ex = part.drop_duplicates("split").set_index("split")["n_examples"].to_dict()
  derived = summaries(stored, [*exclude, *small_groups(
      {k: n_ex.get(k, 0) for k in stored}, min_group_size)])
  derived = {k: v for k, v in derived.items() if k in splits}
  means = part.groupby(["method", "split"], sort=False)["value"].mean()
  runs = per_example_values(part, stored)
  seeds = sorted({s for _, s in runs})
  rng = np.random.default_rng(bs.seed)
  reps: dict[tuple[str, str], np.ndarray] = {}
  if runs and bs.n > 0:
    if bs.paired:
      reps = _replicates(runs, stored, derived, metric, seeds, rng, bs.n)
    else:  # every method on draws of its own
      for m in methods:
        mine = {r: v for r, v in runs.items() if r[0] == m}
        if mine:
          reps.update(_replicates(mine, stored, derived, metric, seeds,
                                  np.random.default_rng([bs.seed, methods.index(m)]), bs.n))
  rows = []
  for k in splits:
    here = {m: float(means[(m, k)]) for m in methods if (m, k) in means.index}
    ok = {m: v for m, v in here.items() if v == v}
    best = (min if lower else max)(ok, key=ok.get) if ok else None
    for m in methods:
      if m not in here:
        continue
      rep = reps.get((m, k))
      lo, hi = _interval(rep, bs.confidence) if rep is not None else (np.nan, np.nan)
      row = {"dataset": ds, "method": m, "split": k, "metric": metric, "mean": here[m],
             "ci_low": lo, "ci_high": hi}
      for tag, other in (("ref", reference), ("best", best)):
        d = dl = dh = np.nan
        if other in here and rep is not None and reps.get((other, k)) is not None:
          d = here[m] - here[other]
          dl, dh = _interval(rep - reps[(other, k)], bs.confidence) if m != other else (0., 0.)
        row.update({f"diff_{tag}": d, f"diff_{tag}_low": dl, f"diff_{tag}_high": dh})
      row["reference"] = reference if reference in here else None
      row["ref_significant"] = bool(row["diff_ref_low"] > 0 or row["diff_ref_high"] < 0)
      row["best"] = best
      worse = (row["diff_best_low"] > 0) if lower else (row["diff_best_high"] < 0)
      # Without intervals (no stored predictions) only the best row is bold.
      known = not np.isnan(row["diff_best_low"])
      row["bold"] = bool(m == best or (known and not worse))
      rows.append(row)
  return pd.DataFrame(rows)


def _aggregate_names(splits: Sequence[str]) -> set[str]:
  return set(ood_aggregates([k for k in splits if ":" not in k]))
