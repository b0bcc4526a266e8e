"""Metrics and the prediction ensembles methods are made of."""
from __future__ import annotations

import numpy as np

from benchmark.data import REGRESSION


def score(task: str, pred: np.ndarray, label: np.ndarray,
          classes: np.ndarray | None = None) -> float:
  """RMSE for regression (lower is better); accuracy in percent otherwise.
  ``pred`` is the prediction for regression, log-probabilities otherwise.
  ``classes``: the class ids a split covers (e.g. ImageNet-A's 200 of 1000);
  the prediction is the best of those, the other logits masked out."""
  if task == REGRESSION:
    return float(np.sqrt(np.mean((pred.astype(np.float64) - label) ** 2)))
  if classes is not None:
    classes = np.asarray(classes)
    return float(100.0 * np.mean(classes[np.argmax(pred[:, classes], axis=-1)] == label))
  return float(100.0 * np.mean(np.argmax(pred, axis=-1) == label))


def point_predictions(task: str, pred: np.ndarray,
                      classes: np.ndarray | None = None) -> np.ndarray:
  """What ``score`` compares with the labels, one value per example: the
  prediction (regression) or the predicted class among ``classes``. Kept
  beside each method record, so that intervals can resample examples."""
  if task == REGRESSION:
    return np.asarray(pred, np.float32).reshape(len(pred))
  if classes is not None:
    classes = np.asarray(classes)
    return classes[np.argmax(pred[:, classes], axis=-1)].astype(np.int32)
  return np.argmax(pred, axis=-1).astype(np.int32)


def per_example(metric: str, point: np.ndarray, label: np.ndarray) -> np.ndarray:
  """Per-example values whose mean is the split's statistic before its last
  step: squared errors (RMSE = sqrt of their mean) or 100 x correct
  (accuracy = their mean)."""
  if metric == "rmse":
    return (np.asarray(point, np.float64) - np.asarray(label, np.float64)) ** 2
  return 100.0 * (np.asarray(point) == np.asarray(label)).astype(np.float64)


def finish(metric: str, mean_value):
  """The statistic from the mean of ``per_example`` values."""
  return np.sqrt(mean_value) if metric == "rmse" else mean_value


def better(task: str, a: float, b: float) -> bool:
  """Is score ``a`` strictly better than ``b``?"""
  return a < b if task == REGRESSION else a > b


def worst(task: str) -> float:
  return np.inf if task == REGRESSION else -np.inf


def ensemble(task: str, preds: list[np.ndarray],
             weights: list[float] | None = None) -> np.ndarray:
  """Output ensemble: mean prediction, or log of the mean probability."""
  w = np.full(len(preds), 1.0 / len(preds)) if weights is None else np.asarray(weights)
  if task == REGRESSION:
    return sum(wi * p for wi, p in zip(w, preds))
  probs = sum(wi * np.exp(p) for wi, p in zip(w, preds))
  return np.log(np.maximum(probs, 1e-30))
