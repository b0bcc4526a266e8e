"""Runs methods over seeds on one dataset, recording one method record per
(method, seed) in the store. A rerun reads the records and trains nothing."""
from __future__ import annotations

import sys
import time
from typing import Sequence

import numpy as np

from benchmark import metrics, multihost
from benchmark.components import ComponentFailed, Context
from benchmark.store import key_of


def method_key(ctx: Context, method, seed: int) -> tuple[str, dict]:
  specs = method.specs(ctx, seed)
  ident = {"method": method.name, "dataset": ctx.info.name, "data": ctx.fingerprint,
           "seed": seed, "components": {n: s.key for n, s in specs.items()},
           "config": method.config(ctx)}
  return key_of(ident), ident


def preds_path(record_path):
  """Where a method record's per-example predictions are kept
  (``<key>.preds.npz`` beside ``<key>.json``)."""
  return record_path.with_name(record_path.stem + ".preds.npz")


def point_arrays(ctx: Context, preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A method's predictions as stored beside its record: per eval split,
  ``<split>:pred`` (the value or class ``metrics.score`` compares) and
  ``<split>:label``."""
  out = {}
  for k, s in ctx.splits.eval_splits().items():
    out[f"{k}:pred"] = metrics.point_predictions(ctx.task, preds[k], ctx.info.eval_classes(k))
    out[f"{k}:label"] = np.asarray(s.label)
  return out


def run_method(ctx: Context, method, seed: int) -> dict:
  key, ident = method_key(ctx, method, seed)
  path = ctx.store.method_path(ctx.info.name, method.name, key)
  def stored():  # process 0 reads the store, for every process
    r = ctx.store.read(path)
    return r, r is not None and (r.get("status") != "ok" or preds_path(path).exists())
  rec, complete = multihost.agree(stored)
  if complete:
    ctx.methods_reused += 1
    ctx.progress(f"{method.name} seed {seed} (stored)")
    return rec
  # A record stored before predictions were kept beside it: combining again
  # (from the stored components) gives its predictions, for the intervals.
  ctx.progress(f"{method.name} seed {seed}" + (" (its predictions)" if rec else ""))
  t0 = time.perf_counter()
  specs = method.specs(ctx, seed)
  labels = {k: np.asarray(s.label) for k, s in ctx.splits.eval_splits().items()}
  try:
    comps = {n: ctx.component(s) for n, s in specs.items()}
    out = method.combine(ctx, seed, comps)
    scores = {k: metrics.score(ctx.task, out.preds[k], labels[k], ctx.info.eval_classes(k))
              for k in labels}
    # Written before the record (a record present means its predictions are).
    ctx.store.write_arrays(preds_path(path), point_arrays(ctx, out.preds))
    if rec is not None:
      ctx.methods_reused += 1
      return rec
    rec = {**ident, "key": key, "status": "ok", "metric": ctx.info.metric,
           "scores": scores, "info": out.info,
           "n_examples": {k: int(len(v)) for k, v in labels.items()},
           "n_trainable": sum(c.record.get("n_trainable", 0) for c in comps.values()),
           "combine_s": time.perf_counter() - t0,
           # Not part of the key: what the tables and ``results.load`` report.
           "preset": ctx.config.preset,
           "config_digest": key_of(ctx.config.to_dict())[:12]}
  except ComponentFailed as e:
    if rec is not None:  # the record stands; only its predictions are missing
      if multihost.is_main():
        print(f"warning: {method.name} seed {seed}: no predictions for its intervals ({e})",
              file=sys.stderr)
      return rec
    if multihost.is_main():
      print(f"warning: {method.name} seed {seed}: {e}", file=sys.stderr)
    rec = {**ident, "key": key, "status": "failed", "reason": str(e),
           "metric": ctx.info.metric,
           "n_examples": {k: int(len(v)) for k, v in labels.items()}}
  ctx.store.write(path, rec)
  return rec


def jobs(methods: Sequence, seeds: Sequence[int],
         shard: tuple[int, int] = (0, 1)) -> list[tuple]:
  """The (method, seed) runs of a sweep, in order; with ``shard=(i, n)`` every
  n-th from the i-th, so that n processes share a sweep (``--shard i/n``).
  Components several runs need are trained once, by whichever process claims
  them first (see ``Context.component``)."""
  i, n = shard
  return [(m, s) for m in methods for s in seeds][i::n]


def run(ctx: Context, methods: Sequence, seeds: Sequence[int],
        shard: tuple[int, int] = (0, 1)) -> list[dict]:
  records = []
  for method, seed in jobs(methods, seeds, shard):
    records.append(run_method(ctx, method, seed))
  return records


def collect(ctx: Context, methods: Sequence, seeds: Sequence[int]) -> list[dict] | None:
  """Every (method, seed) record of the sweep from the store, without
  training; None while some are missing (other shards still running)."""
  return multihost.agree(lambda: _collect(ctx, methods, seeds))


def _collect(ctx: Context, methods: Sequence, seeds: Sequence[int]) -> list[dict] | None:
  records = []
  for method, seed in jobs(methods, seeds):
    key, _ = method_key(ctx, method, seed)
    rec = ctx.store.read(ctx.store.method_path(ctx.info.name, method.name, key))
    if rec is None:
      return None
    records.append(rec)
  return records
