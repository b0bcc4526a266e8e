"""One training loop for every component.

The step is a pure jitted function over (trainable params, optimizer state,
frozen params, other state, batch). A list of freezing rules says which
parameters train; frozen ones get no gradient, and the large model's frozen
part (all of it, or a light-tuned one's bottom blocks) is computed once per
split and cached (``benchmark.frozen_views``). An epoch runs as
``lax.scan`` over a chunk of batches (one dispatch per chunk, not per step), with
batches sharded over the mesh's ``data`` axis. The checkpoint kept is the one
with the best ID-validation metric. A job may defer its final predictions on
the splits other than ID validation (``defer_eval``): ``evaluate`` computes
them later from the stored checkpoint, with the same compiled prediction, so a
candidate that model selection drops is never run over test_id and OOD.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from benchmark import compile_clock, metrics
from benchmark import mesh as meshlib
from benchmark.data import REGRESSION, ShiftSplits, Split
from benchmark.frozen_views import cached_views, chunk_steps, large_frozen
from benchmark.batching import (  # noqa: F401  (re-exported: tests and perf use them)
    OOV_ID, SEQ_MULTIPLE, _cut_tokens, _map_batches, _needed_length, _round_batch, _token_mask,
    eval_batch, replace_with_oov, trim_tokens)
from benchmark.models import params as P
from benchmark.tap_cache import FeatureCache  # noqa: F401


class TrainingDiverged(RuntimeError):
  """The loss became NaN or infinite."""

  def __init__(self, step: int, loss: float):
    super().__init__(f"loss became {loss} at step {step}")
    self.step, self.loss = step, loss


@dataclasses.dataclass
class TrainJob:
  model: nnx.Module
  rules: Sequence[tuple[str, bool]]
  task: str
  optimizer: str = "adam"
  lr: float = 1e-3
  epochs: int = 10
  batch_size: int = 100
  seed: int = 0
  momentum: float = 0.9
  weight_decay: float = 0.0
  head_weights: tuple[float, ...] | None = None  # App. C; None = equal weights
  eval_every: int = 1
  select_on_val: bool = True   # False: keep the last epoch (e.g. pre-training)
  steps_per_dispatch: int = 0  # 0: one whole epoch per dispatch
  eval_batch_size: int = 1024
  eval_batch_tokens: int = 0   # > 0: token positions per prediction batch at most
  train_split: str = "train"
  # Regression: (mean, std) of the training labels; heads learn standardised
  # targets so that a zero-initialised head starts at the mean rating.
  label_scale: tuple[float, float] = (0.0, 1.0)
  desc: str = ""
  # Identifies the frozen large model's weights; encodings cached under it are
  # shared by every job with the same key (e.g. LP and LEVI-pretrained).
  cache_key: str | None = None
  # Saves the state after epochs and resumes from it (``checkpoint.TrainCheckpoint``).
  checkpoint: Any = None
  # Fraction of categorical ids (``cat`` leaves of the views) replaced by id 0,
  # the out-of-vocabulary bucket, in training batches: values never seen in ID
  # training (every OOD movie, product, ...) then meet a trained embedding.
  oov_rate: float = 0.0
  # True: the final predictions cover ID validation only; the other eval
  # splits wait for ``evaluate`` (``TrainResult.deferred`` names them).
  defer_eval: bool = False
  # True: a light-tuned large model's frozen bottom blocks run once per split
  # and weights, cached (``benchmark.frozen_views``); the top blocks train on them.
  bottom_cache: bool = False
  # True: a training batch of a token view is cut to the positions its own
  # longest sequence needs (the same batches, less padding; one step per
  # dispatch, since a scan needs one shape). False: the split's longest.
  trim_batches: bool = False
  # An extra loss term ``fn(params, start) -> scalar`` over the trainable
  # parameters by flat name, now and at the start of training (a regulariser,
  # e.g. L2 towards the pre-trained weights); hashable.
  loss_term: Callable | None = None
  # Called on the host after each epoch trained in this process (not those a
  # resume skips) as ``on_epoch(epoch, scalars)``, epoch counted from 0;
  # ``scalars``: ``loss`` (mean training loss), ``lr``, ``examples_per_s``
  # (training only, the first epoch's compilation included) and, on epochs
  # with a validation, ``val`` (the ID-validation metric). E.g. a TensorBoard
  # log (``benchmark.tensorboard_events``); it must not raise.
  on_epoch: Callable[[int, Mapping[str, float]], None] | None = None


@dataclasses.dataclass
class TrainResult:
  trainable: dict[str, np.ndarray]   # best checkpoint, trainable params only
  state: dict[str, np.ndarray]       # best checkpoint, non-param state (e.g. BN)
  preds: dict[str, np.ndarray]       # per eval split, best checkpoint
  best_epoch: int
  best_val: float
  val_curve: list[float]
  loss_curve: list[float]
  val_epochs: list[int]    # the epoch (from 0) of each ``val_curve`` entry
  n_trainable: int
  n_params: int
  steps: int
  timings: dict[str, float]
  deferred: tuple[str, ...] = ()     # eval splits left to ``evaluate`` (``defer_eval``)


def make_optimizer(name: str, lr: float, momentum: float, weight_decay: float):
  if name == "adam":
    tx = optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
  elif name == "sgd":
    tx = optax.sgd(lr, momentum=momentum or None)
    if weight_decay:
      tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  else:
    raise ValueError(f"optimizer {name!r}: use adam or sgd")
  return tx


def head_losses(task: str, out: jax.Array, label: jax.Array,
                scale: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
  """Per-head mean loss, ``out`` being ``[heads, batch, out_dim]``. Regression
  heads predict standardised targets (label - mean) / std (``scale``)."""
  if task == REGRESSION:
    target = (label[None].astype(out.dtype) - scale[0]) / scale[1]
    return jnp.mean((out[..., 0] - target) ** 2, axis=1)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      out, jnp.broadcast_to(label[None], out.shape[:2]))
  return jnp.mean(ce, axis=1)


def combine_heads(task: str, out: jax.Array,
                  scale: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
  """Prediction = mean over heads (of probabilities, for classification),
  mapped back to label units for regression."""
  if task == REGRESSION:
    return jnp.mean(out[..., 0], axis=0) * scale[1] + scale[0]
  logp = jax.nn.log_softmax(out, axis=-1)
  return jax.scipy.special.logsumexp(logp, axis=0) - jnp.log(out.shape[0])


def _filters(rules):
  match = P.rule_matcher(rules)
  trainable = lambda path, x: isinstance(x, nnx.Param) and match(P.path_str(path))
  return trainable


def flat_names(tree) -> dict[str, jax.Array]:
  """The leaves of a parameter state by flat name (``large/blocks/0/...``),
  traceable inside jit."""
  return {P.path_str(p): v for p, v in P._walk(nnx.to_pure_dict(tree))}


@functools.lru_cache(maxsize=64)
def _compiled(graphdef, rules: tuple, task: str, head_weights: tuple | None,
              opt: tuple, scale: tuple[float, float],
              loss_term: Callable | None = None) -> dict[str, Callable]:
  """The jitted functions of one (architecture, freezing, loss, optimizer):
  built once and shared by every seed."""
  trainable_f = _filters(rules)
  tx = make_optimizer(*opt)

  def forward(trainable, frozen, rest, batch, train):
    # Fresh variables at this trace level: training-mode batch norm writes its
    # running statistics into them (inside grad and scan).
    model = nnx.merge(graphdef, trainable, frozen, rest, copy=True)
    out = model(batch, train=train)
    new_rest = nnx.split(model, trainable_f, nnx.Param, ...)[3]
    return out, new_rest

  def loss_fn(trainable, frozen, rest, batch, start):
    out, new_rest = forward(trainable, frozen, rest, batch, True)
    per_head = head_losses(task, out, batch["label"], scale)
    w = (jnp.full(per_head.shape, 1.0 / per_head.shape[0]) if head_weights is None
         else jnp.asarray(head_weights, per_head.dtype))
    loss = jnp.sum(w * per_head)
    if loss_term is not None:
      loss = loss + loss_term(flat_names(trainable), flat_names(start))
    return loss, new_rest

  def train_step(trainable, opt_state, frozen, rest, batch, start=None):
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, frozen, rest, batch, start)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, rest, loss

  @jax.jit
  def run_chunk(trainable, opt_state, frozen, rest, batches, start=None):
    def body(carry, batch):
      t, o, r = carry
      t, o, r, loss = train_step(t, o, frozen, r, batch, start)
      return (t, o, r), loss
    (trainable, opt_state, rest), losses = jax.lax.scan(
        body, (trainable, opt_state, rest), batches)
    return trainable, opt_state, rest, losses

  @jax.jit
  def predict(trainable, frozen, rest, batch):
    out, _ = forward(trainable, frozen, rest, batch, False)
    return combine_heads(task, out, scale)

  return {"tx": tx, "train_step": jax.jit(train_step), "run_chunk": run_chunk,
          "predict": predict, "trainable_filter": trainable_f}


def _job_functions(job: TrainJob):
  """``job``'s compiled functions and its model's (trainable, frozen, rest)
  state, on the devices: what training and ``evaluate`` share."""
  rules = tuple((r, bool(t)) for r, t in job.rules)
  opt = (job.optimizer, float(job.lr), float(job.momentum), float(job.weight_decay))
  graphdef, trainable, frozen, rest = nnx.split(job.model, _filters(rules), nnx.Param, ...)
  fns = _compiled(graphdef, rules, job.task,
                  None if job.head_weights is None else tuple(job.head_weights), opt,
                  job.label_scale, job.loss_term)
  trainable, frozen, rest = meshlib.put((trainable, frozen, rest), meshlib.replicated())
  return fns, trainable, frozen, rest


def _eval_plan(job: TrainJob, splits: ShiftSplits, deferred: bool):
  """(pools, plan) of ``splits.eval_plan()`` that the end of training
  predicts (``deferred`` False) or that it leaves to ``evaluate`` (True)."""
  pools, plan = splits.eval_plan() if job.select_on_val else ({}, {})
  if job.defer_eval:
    plan = {n: (pool, idx) for n, (pool, idx) in plan.items() if (pool == "val") != deferred}
    pools = {pool: pools[pool] for pool in dict.fromkeys(pool for pool, _ in plan.values())}
  elif deferred:
    pools, plan = {}, {}
  return pools, plan


def _predict_pool(job: TrainJob, fns, state: tuple, arrays: dict) -> np.ndarray:
  """Predictions of the model at ``state`` (trainable, frozen, rest) on one
  pool's host ``arrays``, in prediction batches as ``job`` sets them."""
  return _map_batches(lambda b: fns["predict"](*state, b), arrays, len(arrays["label"]),
                      job.eval_batch_size, job.eval_batch_tokens)


def _predict_plan(job: TrainJob, fns, state: tuple, data: Mapping[str, dict],
                  pools: Mapping, plan: Mapping,
                  known: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Predictions of the model at ``state`` (trainable, frozen, rest) on every
  pool (but those ``known`` already), read off per eval split as ``plan`` says."""
  known = known or {}
  out = {name: known[name] if name in known else _predict_pool(job, fns, state, data[name])
         for name in pools}
  return {name: out[pool] if idx is None else out[pool][idx]
          for name, (pool, idx) in plan.items()}


def evaluate(job: TrainJob, splits: ShiftSplits, params: Mapping[str, np.ndarray],
             feature_cache: FeatureCache | None = None
             ) -> tuple[dict[str, np.ndarray], float]:
  """The predictions ``train`` deferred (``defer_eval``), of ``job.model``
  with ``params`` (a ``TrainResult``'s trainable params and state, by flat
  name) loaded, by the compiled prediction training uses; and the seconds
  they took."""
  rules = tuple((r, bool(t)) for r, t in job.rules)
  if large_frozen(job.model, rules):
    raise ValueError("evaluate: a frozen large model's predictions are never deferred")
  P.load_params(job.model, params, strict=False)
  fns, trainable, frozen, rest = _job_functions(job)
  t0 = time.perf_counter()
  pools, plan = _eval_plan(job, splits, deferred=True)
  data = cached_views(job, rules, {name: s.arrays() for name, s in pools.items()},
                      feature_cache)
  preds = _predict_plan(job, fns, (trainable, frozen, rest), data, pools, plan)
  return preds, time.perf_counter() - t0


def train(job: TrainJob, splits: ShiftSplits,
          feature_cache: FeatureCache | None = None) -> TrainResult:
  model = job.model
  rules = tuple((r, bool(t)) for r, t in job.rules)
  n_trainable, n_params = P.check_rules(model, rules)
  fns, trainable, frozen, rest = _job_functions(job)
  repl = meshlib.replicated()
  opt_state = meshlib.put(fns["tx"].init(trainable), repl)
  # The start point a loss term pulls towards: taken before a resume
  # restores later weights.
  start = trainable if job.loss_term is not None else None

  t0 = time.perf_counter()
  c0 = compile_clock.seconds()
  train_split: Split = getattr(splits, job.train_split)
  pools, plan = _eval_plan(job, splits, deferred=False)
  deferred = tuple(_eval_plan(job, splits, deferred=True)[1])
  data = {job.train_split: train_split.arrays(), **{k: s.arrays() for k, s in pools.items()}}

  # The large model's frozen part runs once per split (and weights): a
  # frozen one's taps, or a light-tuned one's bottom blocks, replace its view.
  data = cached_views(job, rules, data, feature_cache)
  t_cache = time.perf_counter() - t0

  n = len(train_split)
  bs = _round_batch(job.batch_size, n)
  steps_per_epoch = n // bs
  k = job.steps_per_dispatch or steps_per_epoch
  if "large_bottom" in data[job.train_split]:  # token states: a chunk's host copy is large
    k = chunk_steps(data[job.train_split], bs, k)
  rng = np.random.default_rng(job.seed)
  chunk_sharding = meshlib.batch_sharding(1)
  # Training batches share one shape: the split is cut once to its longest
  # sequence (``trim_batches``: then each batch to its own, below).
  train_arrays = trim_tokens(data[job.train_split])
  token_mask = _token_mask(train_arrays) if job.trim_batches else None

  def predict_split(name, tr, re_):
    return _predict_pool(job, fns, (tr, frozen, re_), data[name])

  best = (metrics.worst(job.task), -1, trainable, rest)
  best_val_preds: dict[str, np.ndarray] = {}  # of ``best``, when validated in this process
  val_curve, loss_curve = [], []
  step = 0
  start_epoch, t_before, t_first_epoch = 0, 0.0, 0.0
  ckpt = job.checkpoint
  if ckpt is not None:
    got = ckpt.restore((trainable, opt_state, rest, best[2], best[3]))
    if got is not None:
      tree, meta = got
      trainable, opt_state, rest, b_tr, b_re = meshlib.put(tree, repl)
      best = (meta["best_val"], meta["best_epoch"], b_tr, b_re)
      val_curve, loss_curve = list(meta["val_curve"]), list(meta["loss_curve"])
      step, start_epoch = int(meta["step"]), int(meta["epochs_done"])
      t_before, t_first_epoch = float(meta["train_s"]), float(meta["first_epoch_s"])
  t_train0 = time.perf_counter() - t_before
  bar = tqdm(range(job.epochs), desc=job.desc or "train", leave=False,
             disable=None if jax.process_index() == 0 else True, initial=start_epoch)
  for epoch in range(job.epochs):
    # Drawn every epoch, resumed ones included, so a resumed run sees the
    # same batches as an uninterrupted one.
    perm = rng.permutation(n)[: steps_per_epoch * bs].reshape(steps_per_epoch, bs)
    if epoch < start_epoch:
      continue
    # Its own stream per epoch: a resumed run replaces the same ids.
    oov_rng = np.random.default_rng([job.seed, epoch, 0x00F]) if job.oov_rate > 0 else None
    t_epoch0 = time.perf_counter()
    epoch_losses = []
    pending = None  # the dispatched chunk whose losses are not read yet

    def check(pending):
      nonlocal step
      losses, n_steps = np.asarray(pending[0]), pending[1]
      if not np.all(np.isfinite(losses)):
        bad = int(np.argmin(np.isfinite(losses)))
        raise TrainingDiverged(step + bad, float(losses[bad]))
      step += n_steps
      epoch_losses.append(losses)

    # Positions each batch needs; batches of one length or none: chunks as set.
    needs = (None if token_mask is None else
             [_needed_length(token_mask[row]) for row in perm])
    per_step = needs is not None and min(needs) < token_mask.shape[1]
    for c in range(0, steps_per_epoch, 1 if per_step else k):
      idx = perm[c:c + (1 if per_step else k)]
      # Gathered (e.g. images from a memory-mapped cache) while the device
      # still runs the previous chunk: dispatch is asynchronous.
      if per_step:
        host = jax.tree.map(lambda a: a[None], _cut_tokens(
            jax.tree.map(lambda a: a[idx[0]], train_arrays), needs[c]))
      else:
        host = jax.tree.map(lambda a: a[idx], train_arrays)
      if oov_rng is not None:
        host = replace_with_oov(host, job.oov_rate, oov_rng)
      batches = meshlib.put(host, chunk_sharding, batch_axis=1)
      if pending is not None:
        check(pending)
      if len(idx) == 1:
        # One step per dispatch without a scan: XLA's CPU backend runs a
        # convolutional step 3-4x slower inside a while loop than on its own
        # (a 4.7M-parameter CNN, batch 64 at 64 px: 4.1 s vs 1.1 s per step).
        trainable, opt_state, rest, loss = fns["train_step"](
            trainable, opt_state, frozen, rest, jax.tree.map(lambda a: a[0], batches), start)
        losses = loss[None]
      else:
        trainable, opt_state, rest, losses = fns["run_chunk"](
            trainable, opt_state, frozen, rest, batches, start)
      pending = (losses, len(idx))
    if pending is not None:
      check(pending)
    t_epoch = time.perf_counter() - t_epoch0
    loss_curve.append(float(np.mean(np.concatenate(epoch_losses))))
    if epoch == 0:
      t_first_epoch = time.perf_counter() - t_train0
    if validates(job, epoch):
      val_preds = predict_split("val", trainable, rest)
      v = metrics.score(job.task, val_preds, np.asarray(splits.val.label))
      val_curve.append(v)
      if metrics.better(job.task, v, best[0]):
        best = (v, epoch, trainable, rest)
        best_val_preds = {"val": val_preds}  # the end's val pass would repeat it
      bar.set_postfix(loss=f"{loss_curve[-1]:.4f}", val=f"{v:.4f}")
    else:
      bar.set_postfix(loss=f"{loss_curve[-1]:.4f}")
    bar.update(1)
    if job.on_epoch is not None:
      scalars = {"loss": loss_curve[-1], "lr": float(job.lr),
                 "examples_per_s": steps_per_epoch * bs / max(t_epoch, 1e-9)}
      if validates(job, epoch):
        scalars["val"] = val_curve[-1]
      job.on_epoch(epoch, scalars)
    if ckpt is not None and epoch + 1 < job.epochs and ckpt.due():
      ckpt.save(epoch + 1, (trainable, opt_state, rest, best[2], best[3]), {
          "epochs_done": epoch + 1, "step": step, "best_val": float(best[0]),
          "best_epoch": int(best[1]), "val_curve": val_curve, "loss_curve": loss_curve,
          "train_s": time.perf_counter() - t_train0, "first_epoch_s": t_first_epoch})
  bar.close()
  t_train = time.perf_counter() - t_train0
  if not job.select_on_val:
    best = (float("nan"), job.epochs - 1, trainable, rest)
  _, best_epoch, trainable, rest = best

  t_eval0 = time.perf_counter()
  preds = _predict_plan(job, fns, (trainable, frozen, rest), data, pools, plan, best_val_preds)
  t_eval = time.perf_counter() - t_eval0
  nnx.update(model, trainable, rest)  # leave the model at its best checkpoint

  n_eval = sum(len(s) for s in pools.values())
  later = max(1, (job.epochs - 1) * steps_per_epoch * bs)
  return TrainResult(
      trainable=P.flat_state(trainable), state=P.flat_state(rest), preds=preds,
      best_epoch=int(best_epoch), best_val=float(best[0]), val_curve=val_curve,
      loss_curve=loss_curve, val_epochs=val_epochs(job, job.epochs), n_trainable=n_trainable,
      n_params=n_params, steps=step,
      timings={"cache_s": t_cache, "train_s": t_train, "first_epoch_s": t_first_epoch,
               "train_s_per_example": ((t_train - t_first_epoch) / later
                                       if job.epochs > 1 else math.nan),
               "eval_s": t_eval, "resumed_from_epoch": start_epoch,
               # inside the phases above: tracing, lowering, XLA (or the persistent cache)
               "compile_s": compile_clock.seconds() - c0,
               "eval_s_per_example": t_eval / n_eval if n_eval else math.nan},
      deferred=deferred)


def validates(job: TrainJob, epoch: int) -> bool:
  """Does ``job`` validate after ``epoch`` (from 0)? Every ``eval_every``-th
  epoch and the last, when it selects on validation."""
  return job.select_on_val and ((epoch + 1) % job.eval_every == 0 or epoch + 1 == job.epochs)


def val_epochs(job: TrainJob, epochs_done: int) -> list[int]:
  """The epochs (from 0) among the first ``epochs_done`` after which ``job``
  validates: where each ``val_curve`` entry was measured."""
  return [e for e in range(epochs_done) if validates(job, e)]


@functools.lru_cache(maxsize=16)
def _compiled_predictor(graphdef, task: str, scale: tuple[float, float]):
  @jax.jit
  def fn(state, batch):
    model = nnx.merge(graphdef, state)
    return combine_heads(task, model(batch, train=False), scale)
  return fn


def label_scale(task: str, labels: np.ndarray) -> tuple[float, float]:
  if task != REGRESSION:
    return (0.0, 1.0)
  sd = float(np.std(labels))
  return (float(np.mean(labels)), sd if sd > 1e-8 else 1.0)


def predict(model: nnx.Module, task: str, splits: ShiftSplits | Mapping[str, Split],
            eval_batch_size: int = 1024,
            scale: tuple[float, float] = (0.0, 1.0),
            eval_batch_tokens: int = 0) -> dict[str, np.ndarray]:
  """Predictions of ``model`` as it stands (e.g. with averaged weights), on
  every eval split of ``splits`` (or on each split of a plain mapping)."""
  graphdef, state = nnx.split(model)
  fn = _compiled_predictor(graphdef, task, tuple(scale))
  state = meshlib.put(state, meshlib.replicated())
  if isinstance(splits, ShiftSplits):
    pools, plan = splits.eval_plan()
  else:
    pools, plan = dict(splits), {k: (k, None) for k in splits}
  out = {name: _map_batches(lambda b: fn(state, b), s.arrays(), len(s), eval_batch_size,
                            eval_batch_tokens)
         for name, s in pools.items()}
  return {name: out[pool] if idx is None else out[pool][idx]
          for name, (pool, idx) in plan.items()}
