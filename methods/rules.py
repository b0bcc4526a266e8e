"""The combination rules of methods as pure functions: WiSE-FT's choice of
alpha, the calibration of calibrated ensembles, the greedy soup's rule and
the choice on validation. Kept apart from the networks so that they are unit
tested (and mutation tested) on plain arrays; the methods call them."""
from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from benchmark import metrics
from benchmark.data import REGRESSION


def choose_on_val(task: str, candidates: Sequence, val_of: Callable) -> tuple:
  """``(candidate, val)`` with the best ``val_of(candidate)``; the first on
  ties (a later one must be strictly better), so the order decides ties."""
  best = None
  for c in candidates:
    v = val_of(c)
    if best is None or metrics.better(task, v, best[1]):
      best = (c, v)
  if best is None:
    raise ValueError("nothing to choose from")
  return best


def best_first(task: str, vals: Mapping[Hashable, float]) -> list:
  """Names ordered best ID-validation score first (stable on ties)."""
  return sorted(vals, key=lambda n: vals[n], reverse=task != REGRESSION)


def greedy(task: str, order: Sequence, val_of: Callable[[list], float]) -> tuple[list, float]:
  """Wortsman et al.'s greedy soup: start from ``order[0]``, add each next
  ingredient if ID validation of the set is not worse; ``val_of(names)``
  scores a set. Returns (chosen names, their val)."""
  chosen, best = [order[0]], val_of([order[0]])
  for n in order[1:]:
    v = val_of(chosen + [n])
    if not metrics.better(task, best, v):   # not worse: keep it
      chosen, best = chosen + [n], v
  return chosen, best


TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))


def nll(logp: np.ndarray, label: np.ndarray, t: float) -> float:
  """Mean negative log-likelihood of ``label`` under ``softmax(logp / t)``."""
  z = logp / t
  z = z - z.max(axis=1, keepdims=True)
  lse = np.log(np.exp(z).sum(axis=1))
  return float(np.mean(lse - z[np.arange(len(label)), label]))


def temperature(logp: np.ndarray, label: np.ndarray) -> float:
  """Temperature minimising validation NLL, on a log grid (first on ties)."""
  return float(min(TEMPERATURES, key=lambda t: nll(logp, label, t)))


def affine(pred: np.ndarray, label: np.ndarray) -> tuple[float, float]:
  """Least-squares recalibration label ~ a * pred + b on validation."""
  a, b = np.polyfit(pred.astype(np.float64), label.astype(np.float64), 1)
  return float(a), float(b)


def log_softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def calibrate(task: str, preds: Mapping[str, np.ndarray], val_label: np.ndarray
              ) -> tuple[dict[str, np.ndarray], dict]:
  """One model's predictions per split, calibrated on ``preds["val"]``:
  affine for regression, temperature scaling otherwise; and what was fitted."""
  if task == REGRESSION:
    a, b = affine(preds["val"], val_label)
    return {s: a * v + b for s, v in preds.items()}, {"a": a, "b": b}
  t = temperature(preds["val"], val_label)
  return {s: log_softmax(v / t) for s, v in preds.items()}, {"temperature": t}


def calibrated_ensemble(task: str, members: Mapping[str, Mapping[str, np.ndarray]],
                        val_label: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
  """Kumar et al.'s calibrated ensemble: each member calibrated on ID
  validation, then their outputs averaged (``metrics.ensemble``)."""
  calibrated, info = {}, {}
  for m, p in members.items():
    calibrated[m], info[m] = calibrate(task, p, val_label)
  names = list(calibrated)
  splits = list(calibrated[names[0]])
  return ({s: metrics.ensemble(task, [calibrated[m][s] for m in names]) for s in splits},
          info)
