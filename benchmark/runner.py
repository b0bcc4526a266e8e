"""Running components: get one from the store or train it once, under a claim.

``ComponentRunner.component(spec)`` returns the stored result of ``spec`` or
builds its network (``Networks``), loads what it starts from (the pre-trained
large model, and whatever its kind's ``init`` loads), trains it with
``benchmark.trainer`` and writes the record, its weights and predictions
atomically. Processes sharing a store (``--shard``) train each component once:
a claim file beside the record says who trains it. Each training writes its
per-epoch scalars as TensorBoard event files under
``WORKDIR/tensorboard/<kind>/<key>/`` (``benchmark.tensorboard_events``).

With several processes of one run (``benchmark.multihost``) every process
trains every component in lock-step; process 0 alone reads the store, claims
and writes, and hands the others what they need (is it stored, its arrays).
A component trained in this invocation keeps its arrays in memory.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from benchmark import compile_clock, locks, metrics, multihost, tensorboard_events
from benchmark import trainer as T
from benchmark.data import ShiftSplits, cap_train
from benchmark.errors import UserError
from benchmark.kinds import FROZEN, KINDS
from benchmark.models import params as P
from benchmark.networks import Networks
from benchmark.specs import ComponentSpec, SpecBuilder
from benchmark.store import RunStore


class ClaimTimeout(UserError):
  """Waited past ``claim_wait_s`` for a component another process claimed."""


class ComponentFailed(RuntimeError):
  pass


class NotStored(LookupError):
  """A component is not in the store, and the runner may not train
  (``store_only``: a launcher asking what is left to do)."""


@dataclasses.dataclass
class ComponentResult:
  spec: ComponentSpec
  record: dict
  store: RunStore
  # Computes the predictions its training deferred (``record["deferred"]``):
  # ``evaluate(result) -> (preds, record)``; set by the runner.
  evaluate: Callable[["ComponentResult"], tuple[dict, dict]] | None = None

  # Set when trained in this invocation (kept in memory, not read back);
  # else read from the store by process 0 and handed to every process. A
  # record whose evaluation was deferred gets it here, on first use.
  @functools.cached_property
  def preds(self) -> dict[str, np.ndarray]:
    if self.record.get("deferred"):
      preds, self.record = self.evaluate(self)
      return preds
    return self.stored_preds

  @functools.cached_property
  def stored_preds(self) -> dict[str, np.ndarray]:
    """The predictions in the store (ID validation alone while deferred)."""
    return multihost.agree_arrays(lambda: self.store.read_arrays(self._path(".preds.npz")))

  @functools.cached_property
  def params(self) -> dict[str, np.ndarray]:
    """Trainable params of the best checkpoint (and state under ``state:``)."""
    return multihost.agree_arrays(lambda: self.store.read_arrays(self._path(".npz")))

  def _path(self, suffix: str):
    p = self.store.component_path(self.spec.kind, self.spec.key)
    return p.with_name(p.stem + suffix)


def strip_state(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A stored component's arrays with ``state:`` prefixes removed."""
  return {k[len("state:"):] if k.startswith("state:") else k: v for k, v in flat.items()}


class ComponentRunner:

  def __init__(self, splits: ShiftSplits, config, specs: SpecBuilder, nets: Networks,
               store: RunStore, progress: Callable[[str], None]):
    self.splits, self.info, self.task = splits, splits.info, splits.info.task
    self.config, self.specs, self.nets, self.store = config, specs, nets, store
    self.progress = progress
    self.feature_cache = T.FeatureCache(store.root / "cache" / "taps")
    self.trained: list[str] = []   # component keys trained in this invocation
    self.loaded: list[str] = []    # component keys read back from the store
    self.failed: list[str] = []    # component keys whose training failed (diverged)
    self.claim_poll_s = 2.0        # how often to look for a record another process trains
    # The longest wait for a component another live process is training
    # (its claim kept fresh): past it, an error names what was waited for
    # rather than a silent hang. A dead owner's claim is broken much sooner
    # (``locks.STALE_S``). Set ``$LEVI_CLAIM_WAIT_S`` for longer trainings.
    self.claim_wait_s = float(os.environ.get("LEVI_CLAIM_WAIT_S", 12 * 3600))
    self.methods_reused = 0        # method results read back from the store
    self._results: dict[str, ComponentResult] = {}
    self._fresh: dict[str, tuple[dict, dict]] = {}  # key -> (params, preds) trained now
    self._capped: dict[tuple[int, int], tuple] = {}  # (id(data), cap) -> (data, its cut)
    self.store_only = False        # True: a component not in the store raises NotStored
    # True: models that train the large one predict test_id and OOD only when
    # a method asks for them (``_evaluate``); False: at the end of training.
    self.defer_eval = bool(config.get("defer_eval", True))
    self._pretrained: dict[str, np.ndarray] | None = None

  # -- what a component starts from --------------------------------------------
  def pretrained_large(self) -> dict[str, np.ndarray]:
    """The pre-trained large model's params (and batch-norm statistics), keyed
    relative to the large model."""
    if self._pretrained is None:
      pre = self.specs.pretrain_spec()
      if pre is not None:
        res = self.component(pre)
        self._pretrained = {k[len("large/"):]: v for k, v in res.params.items()
                            if k.startswith("large/")}
      else:
        large = self.nets.build_large(nnx.Rngs(0))
        self.nets.backbone.load(self.nets.backbone_cfg, large)
        # Batch-norm statistics too: they are the pre-trained model as much as
        # its parameters are.
        self._pretrained = P.flat_state(nnx.state(large, (nnx.Param, nnx.BatchStat)))
    return self._pretrained

  def load_pretrained(self, model) -> None:
    P.load_params(model.large, self.pretrained_large(),
                  source=f"pre-trained {self.nets.backbone.name}", strict=True)

  def load_from(self, model, spec: ComponentSpec, prefix: str, source: str) -> None:
    """Loads the stored arrays of component ``spec`` whose names start with
    ``prefix`` (e.g. ``head/`` of LP) into ``model``."""
    arrays = strip_state(self.component(spec).params)
    P.load_params(model, {k: v for k, v in arrays.items() if k.startswith(prefix)},
                  source=source, strict=True)

  def pretrained_key(self) -> str:
    """Names the frozen large model's weights and the data its taps are of."""
    pre = self.specs.pretrain_spec()
    weights = pre.key if pre is not None else self.specs.weights_key()
    return f"{self.nets.backbone.name}-{weights}-{self.specs.fingerprint}"

  def build(self, spec: ComponentSpec) -> tuple[nnx.Module, list[tuple[str, bool]], dict]:
    """Model (initialised, what it starts from loaded), freezing rules and
    extra ``TrainJob`` fields for ``spec``."""
    kind = KINDS.get(spec.kind)
    model, rules = self.nets.model_and_rules(spec.kind, spec.config, nnx.Rngs(spec.seed))
    extra: dict[str, Any] = {}
    if kind.pretrained:
      self.load_pretrained(model)
    if kind.init is not None:
      extra.update(kind.init(self, spec, model) or {})
    if kind.large == FROZEN:
      extra.setdefault("cache_key", self.pretrained_key())
    if spec.config.get("loss_weights") is not None:
      extra["head_weights"] = tuple(spec.config["loss_weights"])
    if kind.loss_term is not None:
      extra["loss_term"] = kind.loss_term(spec.config)
    return model, rules, extra

  def training_data(self, spec: ComponentSpec):
    """What ``spec`` trains and is evaluated on, and its task: the
    benchmark's splits or the kind's own (an auxiliary task), with the ID
    training rows cut to the spec's ``max_train`` (``data.cap_train``)."""
    kind = KINDS.get(spec.kind)
    data, task = kind.data(self, spec) if kind.data is not None else (self.splits, self.task)
    cap = int(spec.config.get("max_train", 0))
    if not cap:
      return data, task
    k = (id(data), cap)
    if k not in self._capped:  # one cut per data and cap, shared by every spec
      self._capped[k] = (data, cap_train(data, cap))
    return self._capped[k][1], task

  # -- get or train -------------------------------------------------------------
  def component(self, spec: ComponentSpec) -> ComponentResult:
    if spec.key in self._results:
      return self._results[spec.key]
    path = self.store.component_path(spec.kind, spec.key)
    rec = multihost.agree(lambda: self._stored(spec, path))
    if rec is not None:
      self.loaded.append(spec.key)
      self.progress(f"{spec.kind} seed {spec.seed} (stored)")
    elif self.store_only:
      raise NotStored(f"{spec.kind} seed {spec.seed} [{spec.key}]")
    else:
      rec = self._claim_and_train(spec, path)
    if rec.get("status") == "failed":
      self.failed.append(spec.key)
      raise ComponentFailed(f"{spec.kind} (seed {spec.seed}) failed: {rec.get('reason')}")
    res = ComponentResult(spec, rec, self.store, self._evaluate)
    if spec.key in self._fresh:
      res.params, res.stored_preds = self._fresh.pop(spec.key)  # fills the cached properties
    self._results[spec.key] = res
    return res

  def _stored(self, spec: ComponentSpec, path) -> dict | None:
    """``spec``'s record when the store holds it with its artefacts (process
    0: the only one that reads the store)."""
    rec = self.store.read(path)
    if rec is not None and rec.get("status") == "ok":
      for suffix in (".npz", ".preds.npz") if rec.get("scores") else (".npz",):
        why = self.store.unreadable_arrays(path.with_name(spec.key + suffix))
        if why is not None:
          self.store.put_aside(path, f"has an artefact {spec.key}{suffix} that {why}",
                               (".npz", ".preds.npz"))
          rec = None
          break
    if rec is not None:
      # A process killed between writing the record and removing its
      # mid-training checkpoint leaves the checkpoint behind: not needed.
      stale = self.store.root / "ckpt" / spec.kind / spec.key
      if stale.exists():
        shutil.rmtree(stale, ignore_errors=True)
    return rec

  def _claim_and_train(self, spec: ComponentSpec, path) -> dict:
    """Trains ``spec`` under a claim in the store, so that processes sharing
    the store (``--shard``) train each component once: a process that finds
    the claim held waits for the record instead, at most ``claim_wait_s``.
    With several processes of one run, process 0 claims for all of them and
    they train together."""
    held: list[locks.Claim] = []

    def claim_or_record() -> dict | None:
      lock = path.with_name(spec.key + ".lock")
      waited = False
      t0 = time.monotonic()
      while True:
        claim = locks.try_claim(lock)
        if claim is not None:
          rec = self.store.read(path)  # finished while we waited for the claim?
          if rec is not None:
            claim.release()
            self.progress(f"{spec.kind} seed {spec.seed} (stored, by another process)")
            return rec
          held.append(claim)
          return None
        if not waited:
          self.progress(f"waiting for {spec.kind} seed {spec.seed}, being trained by "
                        f"{locks.describe(lock)}")
          waited = True
        if time.monotonic() - t0 > self.claim_wait_s:
          raise ClaimTimeout(
              f"waited {time.monotonic() - t0:.0f} s (limit {self.claim_wait_s:g} s, "
              f"$LEVI_CLAIM_WAIT_S) for {spec.kind} seed {spec.seed} [{spec.key}], claimed "
              f"by {locks.describe(lock)} in {lock}, and its record {path} never appeared; "
              f"if that process is gone, delete the lock file and rerun")
        time.sleep(self.claim_poll_s)
        rec = self.store.read(path)
        if rec is not None:
          return rec

    try:
      rec = multihost.agree(claim_or_record)
      if rec is not None:
        self.loaded.append(spec.key)
        return rec
      return self._train(spec)
    finally:
      for claim in held:
        claim.release()

  def _job(self, spec: ComponentSpec, model, rules, extra: dict, data, task: str,
           **fields) -> T.TrainJob:
    """The ``TrainJob`` of ``spec``: what training and a deferred evaluation share."""
    c = self.config
    kind = KINDS.get(spec.kind)
    return T.TrainJob(
        model=model, rules=rules, task=task, optimizer=spec.config.get("optimizer", c.optimizer),
        lr=spec.config["lr"], epochs=spec.config["epochs"],
        batch_size=extra.pop("batch_size", c.batch_size), seed=spec.seed,
        momentum=c.momentum, weight_decay=c.weight_decay, eval_every=c.eval_every,
        steps_per_dispatch=c.steps_per_dispatch, eval_batch_size=c.eval_batch_size,
        eval_batch_tokens=int(c.eval_batch_tokens),
        label_scale=T.label_scale(task, np.asarray(
            getattr(data, extra.get("train_split", "train")).label)),
        oov_rate=float(spec.config.get("oov_rate", 0.0)),
        # A model that trains the large one is run over test_id and OOD only
        # when a method uses its predictions: candidates that model selection
        # on ID validation drops (a grid, L2-SP's strengths, soups'
        # ingredients) never are. Frozen-large and small models are cheap.
        defer_eval=self.defer_eval and kind.trains_large,
        trim_batches=bool(c.get("trim_batches", False)),
        bottom_cache=bool(c.get("bottom_cache", True)),
        desc=f"{spec.kind} seed {spec.seed}", **fields, **extra)

  def _train(self, spec: ComponentSpec) -> dict:
    model, rules, extra = self.build(spec)
    data, task = self.training_data(spec)
    own = KINDS.get(spec.kind).data is None  # the benchmark's splits (maybe capped)
    metric = self.info.metric if own else data.metric
    log = tensorboard_events.epoch_logger(
        tensorboard_events.folder(self.store.root, spec.kind, spec.key), metric)
    job = self._job(spec, model, rules, extra, data, task,
                    checkpoint=self.train_checkpoint(spec), on_epoch=log)
    done = None if job.checkpoint is None else job.checkpoint.saved_epoch()
    if done:
      self.progress(f"resuming {spec.kind} seed {spec.seed} from epoch {done} of "
                    f"{job.epochs} [{spec.key}]")
    else:
      why = nearest_difference(self.store, spec) if multihost.is_main() else None
      self.progress(f"training {spec.kind} seed {spec.seed} [{spec.key}]"
                    + (f": {why}" if why else ""))
    path = self.store.component_path(spec.kind, spec.key)
    base = {"kind": spec.kind, "key": spec.key, "seed": spec.seed, "config": spec.config,
            "deps": {n: d.key for n, d in spec.deps}}
    t0 = time.perf_counter()
    try:
      r = T.train(job, data, self.feature_cache)
    except T.TrainingDiverged as e:
      rec = {**base, "status": "failed", "reason": str(e), "failed_step": e.step}
      self.store.write(path, rec)
      self._drop_checkpoint(job)
      self.trained.append(spec.key)
      return rec
    finally:
      if log is not None:
        log.close()
    scores = self._scores(spec, data, task, r.preds)
    arrays = dict(r.trainable)
    arrays.update({f"state:{k}": v for k, v in r.state.items()})
    self.store.write_arrays(path.with_name(spec.key + ".npz"), arrays)
    if r.preds:
      self.store.write_arrays(path.with_name(spec.key + ".preds.npz"), r.preds)
    rec = {**base, "status": "ok", "metric": metric, "scores": scores,
           "best_epoch": r.best_epoch, "val_curve": r.val_curve, "val_epochs": r.val_epochs,
           "loss_curve": r.loss_curve,
           "n_trainable": r.n_trainable, "n_params": r.n_params, "steps": r.steps,
           "timings": {**r.timings, "total_s": time.perf_counter() - t0},
           "devices": jax.device_count()}
    if r.deferred:
      rec["deferred"] = list(r.deferred)
    self.store.write(path, rec)
    self._drop_checkpoint(job)
    self.trained.append(spec.key)
    self._fresh[spec.key] = (arrays, dict(r.preds))
    return rec

  def _scores(self, spec: ComponentSpec, data, task: str, preds: dict) -> dict[str, float]:
    """The metric of ``preds`` per eval split of ``data``."""
    labels = {k: np.asarray(s.label) for k, s in data.eval_splits().items()}
    own = KINDS.get(spec.kind).data is None  # the benchmark's splits: its classes
    classes = self.info.eval_classes if own else (lambda k: None)
    return {k: metrics.score(task, p, labels[k], classes(k)) for k, p in preds.items()}

  def _evaluate(self, res: ComponentResult) -> tuple[dict, dict]:
    """The predictions ``res``'s training deferred, from its stored
    checkpoint; stored (predictions, then the completed record) and returned
    with the record."""
    spec, rec = res.spec, res.record
    if self.store_only:
      raise NotStored(f"{spec.kind} seed {spec.seed} [{spec.key}]: not evaluated")
    self.progress(f"evaluating {spec.kind} seed {spec.seed} on "
                  f"{len(rec['deferred'])} deferred split(s) [{spec.key}]")
    model, rules, extra = self.build(spec)
    data, task = self.training_data(spec)
    job = self._job(spec, model, rules, extra, data, task)
    c0 = compile_clock.seconds()
    later, eval_s = T.evaluate(job, data, strip_state(res.params), self.feature_cache)
    compile_s = compile_clock.seconds() - c0
    got = {**res.stored_preds, **later}
    order = list(data.eval_plan()[1])
    preds = {k: got[k] for k in order if k in got}
    path = self.store.component_path(spec.kind, spec.key)
    self.store.write_arrays(path.with_name(spec.key + ".preds.npz"), preds)
    timings = dict(rec.get("timings", {}))
    timings["deferred_eval_s"] = eval_s
    timings["deferred_compile_s"] = compile_s
    done = {k: v for k, v in rec.items() if k != "deferred"}  # written_at: its training's
    done.update(scores=self._scores(spec, data, task, preds), timings=timings)
    self.store.write(path, done)
    return preds, done

  def records(self) -> list[dict]:
    """The records of the components this runner returned (trained or read
    from the store), in the order first asked for: e.g. the learning curves
    of an invocation's report (``benchmark.html_report``)."""
    return [r.record for r in self._results.values()]

  def train_checkpoint(self, spec: ComponentSpec):
    """Where a training of ``spec`` saves and resumes mid-way (orbax), or None
    when ``checkpoint_every_s`` < 0 turns it off."""
    every = float(self.config.checkpoint_every_s)
    if every < 0:
      return None
    from benchmark.checkpoint import TrainCheckpoint
    return TrainCheckpoint(self.store.root / "ckpt" / spec.kind / spec.key, every)

  @staticmethod
  def _drop_checkpoint(job) -> None:
    if job.checkpoint is not None:  # the record is in the store: no longer needed
      job.checkpoint.remove()


def _flat(tree, prefix: str = "") -> dict:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def nearest_difference(store: RunStore, spec: ComponentSpec, limit: int = 3) -> str | None:
  """Why ``spec`` is not in the store although a run of its kind and seed on
  the same dataset is: the values in which the nearest stored record's config
  differs (e.g. ``epochs 4, stored 3``), or None when there is no such run
  (a new seed, kind or dataset: nothing to explain)."""
  import json

  from benchmark.store import canonical
  mine = _flat(json.loads(canonical(spec.config)))
  deps = {n: d.key for n, d in spec.deps}
  best = None
  folder = store.component_path(spec.kind, "x").parent
  for path in sorted(folder.glob("*.json"))[:5000] if folder.is_dir() else []:
    try:
      rec = json.loads(path.read_text())
    except (OSError, ValueError):
      continue
    if (not isinstance(rec, dict) or rec.get("seed") != spec.seed
        or not isinstance(rec.get("config"), dict)
        or rec["config"].get("dataset") != spec.config.get("dataset")):
      continue
    theirs = _flat(rec["config"])
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k, "-") != theirs.get(k, "-"))
    dep_diff = sorted(n for n in deps if (rec.get("deps") or {}).get(n) != deps[n])
    score = (len(diff) + len(dep_diff), path.name)
    if best is None or score < best[0]:
      best = (score, diff, dep_diff, theirs, rec.get("key", path.stem))
  if best is None:
    return None
  _, diff, dep_diff, theirs, key = best
  if not diff and not dep_diff:
    return None
  show = lambda v: "-" if v == "-" else json.dumps(v)
  parts = [("the data (its content changed)" if k == "data" else
            f"{k} {show(mine.get(k, '-'))}, stored {show(theirs.get(k, '-'))}")
           for k in diff[:limit]]
  if len(diff) > limit:
    parts.append(f"{len(diff) - limit} more")
  parts += [f"its {n} component" for n in dep_diff]
  return f"differs from the stored run {key} in " + "; ".join(parts)
