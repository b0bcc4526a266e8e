"""``benchmark.results`` on a toy store whose predictions are known: the
bootstrap intervals against direct computations, paired against unpaired,
which rows are bold, and ``load`` keeping configurations apart."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import metrics, results, tables
from benchmark.protocol import preds_path
from benchmark.store import RunStore


def put(store, method, seed, preds, labels, metric="acc", digest="c0", preset="cpu",
        dataset="toy"):
  """A method record with per-split predictions ``preds`` (and its scores)."""
  task = "regression" if metric == "rmse" else "classification"
  scores = {}
  for k, p in preds.items():
    values = metrics.per_example(metric, p, labels[k])
    scores[k] = float(metrics.finish(metric, values.mean()))
    if task == "classification":  # what the stored score is made of, checked
      onehot = np.log(np.eye(int(max(labels[k].max(), p.max())) + 1)[p] + 1e-9)
      assert scores[k] == pytest.approx(metrics.score(task, onehot, labels[k]))
  key = f"{method}-{seed}-{digest}"
  path = store.method_path(dataset, method, key)
  arrays = {}
  for k in preds:
    arrays[f"{k}:pred"], arrays[f"{k}:label"] = preds[k], labels[k]
  store.write_arrays(preds_path(path), arrays)
  store.write(path, {"dataset": dataset, "method": method, "seed": seed, "status": "ok",
                     "metric": metric, "scores": scores, "key": key, "preset": preset,
                     "config_digest": digest,
                     "n_examples": {k: int(len(v)) for k, v in labels.items()}})
  return path


def correct_with(rng, n, p):
  return (rng.random(n) < p).astype(np.int32)


def test_accuracy_interval_matches_the_binomial_one(tmp_path):
  """One seed: the interval of an accuracy is the binomial one, p +- 1.96
  sqrt(p (1 - p) / n), up to the bootstrap's Monte Carlo error."""
  store = RunStore(tmp_path)
  rng = np.random.default_rng(0)
  n = 4000
  labels = {"test_id": np.zeros(n, np.int32)}
  pred = 1 - correct_with(rng, n, 0.7)           # 0 (correct) with probability 0.7
  put(store, "m", 0, {"test_id": pred}, labels)
  frame = results.load(tmp_path)
  c = results.compare(frame, reference=None, bootstrap=results.Bootstrap(n=2000))
  row = c.set_index("split").loc["test_id"]
  p = np.mean(pred == 0)
  half = 1.96 * np.sqrt(p * (1 - p) / n) * 100
  assert row["mean"] == pytest.approx(100 * p)
  assert row["ci_low"] == pytest.approx(100 * p - half, abs=0.12 * half)
  assert row["ci_high"] == pytest.approx(100 * p + half, abs=0.12 * half)


def test_rmse_interval_matches_a_direct_bootstrap_over_examples_and_seeds(tmp_path):
  """Three seeds of a regression: the interval equals that of a plain loop
  that resamples examples and seeds (its own random draws), within Monte
  Carlo error."""
  store = RunStore(tmp_path)
  rng = np.random.default_rng(1)
  n = 500
  y = rng.normal(size=n)
  preds = [y + rng.normal(scale=s, size=n) for s in (0.8, 1.0, 1.2)]
  for seed, p in enumerate(preds):
    put(store, "m", seed, {"test_id": p.astype(np.float32)}, {"test_id": y}, metric="rmse")
  c = results.compare(results.load(tmp_path), reference=None,
                      bootstrap=results.Bootstrap(n=3000))
  row = c.set_index("split").loc["test_id"]
  direct = np.random.default_rng(99)
  reps = []
  for _ in range(3000):
    idx = direct.integers(0, n, n)
    seeds = direct.integers(0, 3, 3)
    reps.append(np.mean([np.sqrt(np.mean((preds[s][idx].astype(np.float32) - y[idx]) ** 2))
                         for s in seeds]))
  lo, hi = np.quantile(reps, [0.025, 0.975])
  width = hi - lo
  assert row["mean"] == pytest.approx(np.mean(
      [np.sqrt(np.mean((p.astype(np.float32) - y) ** 2)) for p in preds]), rel=1e-6)
  assert row["ci_low"] == pytest.approx(lo, abs=0.08 * width)
  assert row["ci_high"] == pytest.approx(hi, abs=0.08 * width)


def correlated_store(tmp_path):
  """Methods a (70% right), b (a with 40 right answers made wrong and 40
  wrong ones made right: the same accuracy), c (a with 10% of its right
  answers made wrong): b ties with a; c is worse."""
  store = RunStore(tmp_path)
  rng = np.random.default_rng(2)
  n = 3000
  labels = {"test_id": np.zeros(n, np.int32), "ood/g": np.zeros(n, np.int32)}
  base = {k: 1 - correct_with(rng, n, 0.7) for k in labels}
  put(store, "a", 0, base, labels)
  b, c = {}, {}
  for k, p in base.items():
    right, wrong = np.flatnonzero(p == 0), np.flatnonzero(p == 1)
    b[k] = p.copy()
    b[k][rng.choice(right, 40, replace=False)] = 1
    b[k][rng.choice(wrong, 40, replace=False)] = 0
    c[k] = np.where((p == 0) & (rng.random(n) < 0.1), 1, p)
  put(store, "b", 0, b, labels)
  put(store, "c", 0, c, labels)
  return store


def test_paired_difference_interval_is_narrower_than_unpaired(tmp_path):
  correlated_store(tmp_path)
  frame = results.load(tmp_path)
  paired = results.compare(frame, reference="a", bootstrap=results.Bootstrap(n=500))
  unpaired = results.compare(frame, reference="a",
                             bootstrap=results.Bootstrap(n=500, paired=False))
  for m in ("b", "c"):
    p = paired.set_index(["method", "split"]).loc[(m, "test_id")]
    u = unpaired.set_index(["method", "split"]).loc[(m, "test_id")]
    assert p["diff_ref"] == pytest.approx(u["diff_ref"])
    assert (p["diff_ref_high"] - p["diff_ref_low"]) < 0.6 * (u["diff_ref_high"] -
                                                           u["diff_ref_low"])


def test_bold_is_the_best_and_every_row_not_significantly_worse(tmp_path):
  correlated_store(tmp_path)
  c = results.compare(results.load(tmp_path), reference="a",
                      bootstrap=results.Bootstrap(n=1000))
  t = c[c["split"] == "test_id"].set_index("method")
  assert t.loc["a", "best"] == "a"
  assert not t.loc["b", "ref_significant"]    # 2% flipped: inside the noise
  assert t.loc["c", "ref_significant"]        # 10% flipped: worse, and it shows
  assert t.loc["c", "diff_ref_high"] < 0
  assert list(t.index[t["bold"]]) == ["a", "b"]
  # The table's LaTeX bolds exactly those rows.
  recs = [RunStore(tmp_path).read(p) for p in sorted((tmp_path / "runs").rglob("*.json"))]
  frame = tables.dataset_frame(recs, ["a", "b", "c"], comparison=c)
  styles = tables._rank_styles(frame)
  assert [m for m in styles.index if styles.loc[m, "test_id"]] == ["a", "b"]


def test_without_predictions_only_the_best_is_bold(tmp_path):
  correlated_store(tmp_path)
  for p in (tmp_path / "runs").rglob("*.preds.npz"):
    p.unlink()
  c = results.compare(results.load(tmp_path), reference="a")
  t = c[c["split"] == "test_id"].set_index("method")
  assert t["ci_low"].isna().all()
  assert list(t.index[t["bold"]]) == ["a"]


def test_load_keeps_configurations_and_presets_apart(tmp_path):
  store = RunStore(tmp_path)
  labels = {"test_id": np.zeros(40, np.int32)}
  put(store, "m", 0, {"test_id": np.zeros(40, np.int32)}, labels, digest="aaa")
  put(store, "m", 0, {"test_id": np.ones(40, np.int32)}, labels, digest="bbb",
      preset="smoke")
  frame = results.load(tmp_path)
  got = frame[frame["split"] == "test_id"].set_index("config_digest")["value"]
  assert got.to_dict() == {"aaa": 100.0, "bbb": 0.0}
  assert set(results.load(tmp_path, preset="smoke")["config_digest"]) == {"bbb"}
  assert results.load(tmp_path, dataset="other").empty


def test_small_groups_leave_the_aggregates_and_are_noted():
  rec = {"dataset": "d", "method": "m", "seed": 0, "status": "ok", "metric": "acc",
         "scores": {"test_id": 50.0, "ood/big": 60.0, "ood/big2": 80.0, "ood/tiny": 0.0},
         "n_examples": {"test_id": 100, "ood/big": 100, "ood/big2": 50, "ood/tiny": 5}}
  f = tables.dataset_frame([rec]).set_index("split")
  assert f.loc["ood", "mean"] == pytest.approx(70.0)          # tiny left out
  assert f.loc["ood:weighted", "mean"] == pytest.approx((6000 + 4000) / 150)
  assert f.loc["ood:worst", "mean"] == pytest.approx(60.0)
  assert "fewer than 30 examples" in f.loc["ood/tiny", "note"]
  f0 = tables.dataset_frame([rec], min_group_size=0).set_index("split")
  assert f0.loc["ood", "mean"] == pytest.approx(140 / 3)


@pytest.mark.slow
def test_two_configs_leave_two_reports_and_load_keeps_them_apart(run_cli, tmp_path):
  """Two invocations that differ in ``--config.epochs``: two report folders,
  each with its run.json naming its override, and ``results.load`` returns
  both configurations apart; ``tables/`` holds the latest."""
  import json
  base = ["--method", "ft,lp", "--dataset", "synthetic_spurious", "--preset", "smoke",
          "--seeds", "0,1"]
  for epochs in (2, 3):
    r = run_cli(base + [f"--config.epochs={epochs}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
  folders = sorted((tmp_path / "reports" / "synthetic_spurious").iterdir())
  assert len(folders) == 2
  runs = [json.loads((f / "run.json").read_text()) for f in folders]
  assert sorted(r["non_default_config"]["synthetic_spurious"]["epochs"] for r in runs) == [2, 3]
  for r, f in zip(runs, folders):
    assert r["overrides"] in ("epochs=2", "epochs=3")
    assert set(r["files"]) <= {p.name for p in f.iterdir()}
    assert len(r["method_records"]) == 4 and r["harness"]["commit"]
  df = results.load(tmp_path, dataset="synthetic_spurious", preset="smoke")
  assert df["config_digest"].nunique() == 2
  assert len(df[(df["split"] == "test_id")]) == 8          # 2 configs x 2 methods x 2 seeds
  # Each folder's report.html parses, embeds its figures and shows intervals.
  from html.parser import HTMLParser

  class Tags(HTMLParser):
    def __init__(self):
      super().__init__()
      self.tags = []

    def handle_starttag(self, tag, attrs):
      self.tags.append((tag, dict(attrs)))
  for f in folders:
    p = Tags()
    p.feed((f / "report.html").read_text())
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    assert len(imgs) >= 2 and all(i.startswith("data:image/png;base64,") for i in imgs)
    assert sum(t == "table" for t, _ in p.tags) >= 3
    assert "% interval" in (f / "report.html").read_text()
  latest = (tmp_path / "tables" / "synthetic_spurious.tex").read_text()
  assert "epochs=3" in latest
  assert latest == (folders[-1] / "synthetic_spurious.tex").read_text()


def test_a_class_never_in_id_training_is_noted():
  import dataclasses

  from benchmark import setup
  from benchmark.data import Split
  splits = setup.load_splits("synthetic_spurious", setup.resolve_config(
      "synthetic_spurious", "smoke"))
  assert splits.unseen_classes() == {}
  tr = splits.train
  keep = np.asarray(tr.label) == 0   # ID training without class 1
  only0 = Split({k: v[keep] for k, v in tr.large.items()},
                {k: v[keep] for k, v in tr.small.items()}, np.asarray(tr.label)[keep])
  notes = dataclasses.replace(splits, train=only0).unseen_classes()
  assert set(notes) == {"val", "test_id", "ood/x_only"}
  n1 = int(np.sum(np.asarray(splits.test_id.label) == 1))
  assert f"1 class(es) (1; {n1} example(s)) never occur in ID training" == notes["test_id"]
