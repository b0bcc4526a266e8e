"""Performance benchmark: every figure a ratio of two timings taken side by
side in this one run, on this machine (never a timed unit test).

  python -m benchmark.perf --json /tmp/perf.json            # every measurement
  python -m benchmark.perf --only ft_step,cached_epoch       # some of them

Keys (target):
- ``ft_step_vs_torch`` (>= 1.2): examples/s of the harness's ``ft`` training
  step of ``minilm_l6`` (batch 64, 64 tokens, float32, Adam) over the same step
  in PyTorch with ``transformers``' BertModel holding the same weights.
- ``ft_step_mfu`` (>= 0.6): that step's FLOP/s (XLA's count of the compiled
  step) over a float32 2048x2048 ``jnp.dot``'s FLOP/s.
- ``cached_epoch_speedup`` (>= 50): an epoch of ``levi_pretrained`` on
  MovieLens (``cpu`` preset) from cached taps, versus the same epoch running
  the frozen MiniLM in every step.
- ``dispatch_efficiency`` (>= 0.5): for the small models (LEVI's adapters on
  cached taps; the embedding MLP), device compute time of an epoch (one
  ``lax.scan`` over device-resident batches) over the epoch's wall time as the
  trainer runs it (host gather, transfer, scan, loss check); the lower of the two.
- ``pipeline_efficiency`` (>= 0.95): steps/s of ``ft`` on MovieLens fed by the
  trainer's input pipeline, over the same steps on one pre-materialised batch.
- ``component_reuse`` (= 1.0): unique components over component trainings
  performed, for Tables 1 and 5 on MovieLens (``smoke`` preset, seed 0).
- ``peak_rss_gib`` (<= 8): peak resident memory of a ``cpu``-preset MovieLens
  run (``--rss_methods``, seed 0), in a child process.
- ``sweep_speedup`` (>= 4): wall time of a sweep (``--sweep_args``: by default
  L2-SP's strengths on MovieLens, ``cpu`` preset, seed 0, from an empty
  workdir) as the harness ran it before (``BEFORE_FLAGS``: every model run
  over test_id and OOD when it finishes training) over the same sweep now,
  each in a child process from an empty compilation cache; the two must give
  the same scores (checked). Its detail has ``sweep_efficiency``: the
  components' own time (tap cache, training, validation, prediction) over the
  wall time, the rest being start-up, data loading and combining.

On an accelerator the default is ``--only accel``: examples/s and MFU of the
``ft`` step of ``minilm_l6``, ``t5_small`` and ``vit_b16`` in bfloat16 (no
target; the figures the issue asks to report). The targets above are CPU
figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = {"ft_step_vs_torch": (">=", 1.2), "ft_step_mfu": (">=", 0.6),
           "cached_epoch_speedup": (">=", 50.0), "dispatch_efficiency": (">=", 0.5),
           "pipeline_efficiency": (">=", 0.95), "component_reuse": ("==", 1.0),
           "peak_rss_gib": ("<=", 8.0), "sweep_speedup": (">=", 4.0)}
SECTIONS = ("ft_step", "cached_epoch", "pipeline", "reuse", "rss", "sweep", "accel")
CPU_SECTIONS = SECTIONS[:-1]  # the default on CPU; on an accelerator: accel
SWEEP_ARGS = ("--dataset movielens_genre --backbone minilm_l6 --method l2sp --seeds 0 "
              "--preset cpu")
REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
  print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _timeit(fn, reps: int) -> float:
  """Median seconds of ``fn()`` over ``reps`` runs, after one warm-up."""
  return _side_by_side([fn], reps)[0]


def _side_by_side(fns, reps: int) -> list[float]:
  """Median seconds of each ``fn()``, the functions run in turn ``reps``
  times (after one warm-up each), so drifts of the machine hit all alike."""
  for fn in fns:
    fn()
  ts = [[] for _ in fns]
  for _ in range(reps):
    for fn, out in zip(fns, ts):
      t = time.perf_counter()
      fn()
      out.append(time.perf_counter() - t)
  return [float(np.median(t)) for t in ts]


# -- ft step: JAX against PyTorch, and MFU ----------------------------------------

def _with_head(name: str = "minilm_l6", compute_dtype: str = "float32", image: int = 224):
  """A backbone with a one-output regression head, as ``ft`` trains it: its
  weights where they load offline (MiniLM), else its seeded initialisation
  (throughput does not depend on the weights)."""
  import ml_collections
  from flax import nnx

  from benchmark.data import REGRESSION, DatasetInfo
  from benchmark.errors import UserError
  from benchmark.models import BACKBONES
  from benchmark.models.task import LargeWithHead
  bb = BACKBONES.get(name)
  cfg = ml_collections.ConfigDict(dict(bb.defaults))
  cfg.compute_dtype = compute_dtype
  spec = {"image": (image, image, 3)} if bb.modality == "image" else {"text": True}
  info = DatasetInfo("perf", REGRESSION, 1, spec, {}, bb.modality)
  model = LargeWithHead(bb.build(info, cfg, nnx.Rngs(0)), 1, rngs=nnx.Rngs(0))
  try:
    bb.load(cfg, model.large)
  except UserError:
    pass
  return model


def _chunk_fns(model, rules, lr: float = 1e-4, fresh: bool = False):
  """The trainer's compiled functions for ``model``; ``fresh``: new ones, not
  the trainer's cached ones (to trace them again, e.g. under other forms)."""
  from flax import nnx

  from benchmark import trainer as T
  rules = tuple(rules)
  graphdef, trainable, frozen, rest = nnx.split(model, T._filters(rules), nnx.Param, ...)
  compiled = T._compiled.__wrapped__ if fresh else T._compiled
  fns = compiled(graphdef, rules, "regression", None, ("adam", lr, 0.9, 0.0), (0.0, 1.0))
  return fns, trainable, frozen, rest, fns["tx"].init(trainable)


def _ft_runner(model, one: dict, steps: int, fresh: bool = False):
  """``ft`` (every parameter trained) on ``model``: a callable running
  ``steps`` of the trainer's compiled steps in one ``lax.scan`` on copies of
  the batch ``one``, and a callable giving one step's FLOPs (XLA's count)."""
  import jax
  import jax.numpy as jnp

  from benchmark.efficiency import compiled_flops
  fns, trainable, frozen, rest, opt_state = _chunk_fns(model, [(r".*", True)], fresh=fresh)
  chunk = jax.tree.map(lambda a: jnp.asarray(np.stack([a] * steps)), one)
  state = [trainable, opt_state, rest]

  def run():
    t, o, r, losses = fns["run_chunk"](state[0], state[1], frozen, state[2], chunk)
    state[:] = [t, o, r]
    losses.block_until_ready()

  def flops() -> float:
    return compiled_flops(fns["train_step"], trainable, opt_state, frozen, rest,
                          jax.tree.map(jnp.asarray, one))
  return run, flops


def ft_step(batch: int = 64, seq: int = 64, steps: int = 8, reps: int = 5) -> dict:
  import jax.numpy as jnp

  from benchmark.efficiency import matmul_fn
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 30000, (batch, seq)).astype(np.int32)
  ids[:, 0] = 101
  mask = np.ones((batch, seq), np.int32)
  y = rng.normal(size=batch).astype(np.float32)

  one = {"large": {"ids": ids, "mask": mask}, "small": {}, "label": y}
  jax_steps, step_flops = _ft_runner(_with_head("minilm_l6"), one, steps)
  flops = step_flops()
  dot, dot_flops = matmul_fn(jnp.float32, 2048)

  def matmuls():  # float32 2048x2048 jnp.dot, the machine's practical peak
    for _ in range(10):
      dot()
  # Each in its own block of rounds after its warm-up, not interleaved: on this
  # 2-core machine alternating them round by round slowed every one (JAX's
  # step 58 -> 38-49 examples/s, PyTorch's 43 -> 38-41, the matmul 420-466 ->
  # 345 GFLOP/s), each leaving the allocator and the thread pools in a state that
  # costs the next.
  _log(f"ft step: JAX, {reps} rounds of {steps} steps")
  t_jax = _timeit(jax_steps, reps)
  _log(f"ft step: PyTorch (transformers BertModel, same weights), {reps} rounds")
  t_torch = _timeit(_torch_ft_steps(ids, mask, y, steps), reps)
  _log("ft step: float32 2048x2048 matmul")
  t_dot = _timeit(matmuls, reps)
  jax_s, torch_s, peak = t_jax / steps, t_torch / steps, 10 * dot_flops / t_dot
  # What the fast forms of benchmark.models.ops save: the same step traced with
  # the plain ones (erfc GELU, three projections), the two interleaved.
  from benchmark.models import ops
  with ops.plain_forms():
    plain_steps = _ft_runner(_with_head("minilm_l6"), one, steps, fresh=True)[0]
    plain_steps()  # traced and compiled here, under the plain forms
  _log(f"ft step: plain forms against the harness's, interleaved, {reps} rounds")
  t_plain, t_fast = _side_by_side([plain_steps, jax_steps], reps)
  return {"ft_step_vs_torch": torch_s / jax_s, "ft_step_mfu": flops / jax_s / peak,
          "detail": {"jax_examples_per_s": batch / jax_s, "torch_examples_per_s": batch / torch_s,
                     "step_gflop": flops / 1e9, "jax_gflop_per_s": flops / jax_s / 1e9,
                     "torch_gflop_per_s": flops / torch_s / 1e9,
                     "matmul_gflop_per_s": peak / 1e9, "batch": batch, "seq": seq,
                     "steps_per_dispatch": steps, "torch_threads": _torch_threads(),
                     "plain_forms_s_per_step": t_plain / steps,
                     "fast_forms_s_per_step": t_fast / steps,
                     "fast_forms_speedup": t_plain / t_fast}}


def _torch_threads() -> int:
  import torch
  return torch.get_num_threads()


def _torch_ft_steps(ids, mask, y, steps: int):
  """A callable running ``steps`` Adam steps of BertModel (all-MiniLM-L6-v2's
  weights, eval mode: no dropout, as the harness's backbone) with a linear
  head on the mean-pooled states, squared error: the harness's ``ft`` step."""
  import torch
  import transformers

  from benchmark.models.bert import minilm_dir
  transformers.logging.set_verbosity_error()  # the unused pooler weights are expected
  torch.manual_seed(0)
  bert = transformers.BertModel.from_pretrained(minilm_dir(), add_pooling_layer=False,
                                                dtype=torch.float32, local_files_only=True)
  bert.eval()
  head = torch.nn.Linear(bert.config.hidden_size, 1)
  opt = torch.optim.Adam(list(bert.parameters()) + list(head.parameters()), lr=1e-4)
  ids_t, mask_t, y_t = torch.from_numpy(ids).long(), torch.from_numpy(mask).long(), \
      torch.from_numpy(y)
  m = mask_t.unsqueeze(-1).float()

  def step():
    h = bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
    pooled = (h * m).sum(1) / m.sum(1)
    loss = ((head(pooled).squeeze(-1) - y_t) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  def run():
    for _ in range(steps):
      step()
  return run


# -- accelerator: the paper's backbones ---------------------------------------------

ACCEL_BACKBONES = ("minilm_l6", "t5_small", "vit_b16")


def accel(batch: int = 64, seq: int = 64, image: int = 224, steps: int = 8, reps: int = 5,
          backbones=ACCEL_BACKBONES) -> dict:
  """Examples/s and MFU of the ``ft`` step (Adam, every parameter trained) of
  each backbone in bfloat16 (float32 accumulation and parameters), against
  a bfloat16 ``jnp.dot`` on the same device (8192x8192 on an accelerator,
  2048x2048 on CPU). Not a target: figures to report."""
  import jax
  import jax.numpy as jnp

  from benchmark.efficiency import matmul_fn
  on_cpu = jax.default_backend() == "cpu"
  dot, dot_flops = matmul_fn(jnp.bfloat16, 2048 if on_cpu else 8192)
  _log("accel: bfloat16 matmul peak")
  peak = dot_flops / _timeit(dot, reps)
  rng = np.random.default_rng(0)
  out = {"matmul_bf16_gflop_per_s": peak / 1e9, "device": str(jax.devices()[0]),
         "batch": batch}
  for name in backbones:
    model = _with_head(name, "bfloat16", image)
    if name.startswith("vit"):
      view = {"image": rng.integers(0, 256, (batch, image, image, 3)).astype(np.uint8)}
    else:
      view = {"ids": rng.integers(5, 30000, (batch, seq)).astype(np.int32),
              "mask": np.ones((batch, seq), np.int32)}
    one = {"large": view, "small": {}, "label": rng.normal(size=batch).astype(np.float32)}
    run, step_flops = _ft_runner(model, one, steps)
    flops = step_flops()
    _log(f"accel: {name} ft step, {reps} rounds of {steps} steps")
    step_s = _timeit(run, reps) / steps
    out[name] = {"examples_per_s": batch / step_s, "step_gflop": flops / 1e9,
                 "mfu": flops / step_s / peak}
  return {"detail": out}


# -- MovieLens: cached taps, dispatch, input pipeline ---------------------------------

def _movielens_context(workdir: Path, preset: str = "cpu"):
  from benchmark import setup
  config = setup.resolve_config("movielens_genre", preset)
  return setup.load_context("movielens_genre", config, "minilm_l6", workdir)


def _epoch_runner(ctx, spec, data: dict):
  """The trainer's epoch for ``spec`` over ``data`` (host arrays): per chunk a
  gather, a transfer and one scan, as ``trainer.train`` runs it; and the scan
  alone over batches already on the device."""
  import jax

  from benchmark import mesh as meshlib
  from benchmark import trainer as T
  model, rules, _ = ctx.build(spec)
  fns, trainable, frozen, rest, opt_state = _chunk_fns(model, rules)
  n = len(data["label"])
  bs = T._round_batch(int(ctx.config.batch_size), n)
  steps = n // bs
  perm = np.random.default_rng(0).permutation(n)[: steps * bs].reshape(steps, bs)
  arrays = T.trim_tokens(data)
  sharding = meshlib.batch_sharding(1)
  state = [trainable, opt_state, rest]

  def scan(batches):
    t, o, r, losses = fns["run_chunk"](state[0], state[1], frozen, state[2], batches)
    state[:] = [t, o, r]
    return losses

  def wall():  # as trainer.train: one chunk per epoch (steps_per_dispatch 0)
    batches = meshlib.put(jax.tree.map(lambda a: a[perm], arrays), sharding, batch_axis=1)
    losses = np.asarray(scan(batches))
    assert np.all(np.isfinite(losses))

  resident = meshlib.put(jax.tree.map(lambda a: a[perm], arrays), sharding, batch_axis=1)
  jax.block_until_ready(resident)

  def compute():
    scan(resident).block_until_ready()

  def one_batch():  # the same number of steps on one pre-materialised batch
    first = jax.tree.map(lambda a: np.stack([a[perm[0]]] * steps), arrays)
    return meshlib.put(first, sharding, batch_axis=1)
  fixed = one_batch()
  jax.block_until_ready(fixed)

  def materialised():
    scan(fixed).block_until_ready()
  return {"wall": wall, "compute": compute, "materialised": materialised, "steps": steps,
          "batch": bs}


def cached_epoch(workdir: Path, reps: int = 31) -> dict:
  import jax

  from benchmark import frozen_views as FV
  from benchmark import trainer as T
  ctx = _movielens_context(workdir)
  train = ctx.splits.train.arrays()
  out = {}
  # levi_pretrained (levi_frozen): the adapters and the small model train,
  # MiniLM is frozen. Cached: its taps computed once and fed to every epoch.
  spec = ctx.spec("levi_frozen", 0)
  model, rules, _ = ctx.build(spec)
  enc_graph, enc_state = __import__("flax").nnx.split(model.large)
  encode = FV._compiled_encoder(enc_graph)
  _log(f"cached epoch: MiniLM taps of {len(train['label'])} training ratings")
  taps = T._map_batches(lambda b: encode(enc_state, b), train["large"], len(train["label"]),
                        int(ctx.config.eval_batch_size))
  cached_data = {"large_taps": taps, "small": train["small"], "label": train["label"]}
  cached = _epoch_runner(ctx, spec, cached_data)
  t_cached, t_cached_compute = _side_by_side([cached["wall"], cached["compute"]], reps)
  # Recomputing: the same epoch with the frozen MiniLM run inside every step.
  recompute = _epoch_runner(ctx, spec, train)
  _log("cached epoch: the same epoch recomputing the frozen MiniLM")
  t_recompute = _timeit(recompute["wall"], 1)
  out["cached_epoch_speedup"] = t_recompute / t_cached
  # Dispatch: compute over wall, for the adapters on taps and the embedding MLP.
  eff = {"levi_pretrained_adapters": t_cached_compute / t_cached}
  small = _epoch_runner(ctx, ctx.spec("small", 0), train)
  t_wall, t_compute = _side_by_side([small["wall"], small["compute"]], reps)
  eff["embedding_mlp"] = t_compute / t_wall
  out["dispatch_efficiency"] = min(eff.values())
  out["detail"] = {"cached_epoch_s": t_cached, "recompute_epoch_s": t_recompute,
                   "epoch_steps": cached["steps"], "batch": cached["batch"],
                   "dispatch_efficiency_by_model": eff,
                   "compute_dtype": str(ctx.backbone_cfg.compute_dtype),
                   "devices": jax.device_count()}
  return out


def pipeline(workdir: Path, reps: int = 3) -> dict:
  ctx = _movielens_context(workdir)
  run = _epoch_runner(ctx, ctx.spec("ft", 0), ctx.splits.train.arrays())
  _log(f"pipeline: ft epochs ({run['steps']} steps) fed by the trainer's pipeline and "
       f"by one pre-materialised batch")
  t_real, t_fixed = _side_by_side([run["wall"], run["materialised"]], reps)
  return {"pipeline_efficiency": t_fixed / t_real,
          "detail": {"pipeline_epoch_s": t_real, "materialised_epoch_s": t_fixed,
                     "steps": run["steps"], "batch": run["batch"]}}


# -- reuse and memory ------------------------------------------------------------------

def reuse(workdir: Path) -> dict:
  from benchmark import protocol
  from benchmark.paper_tables import TABLES
  from methods import METHODS
  ctx = _movielens_context(workdir, preset="smoke")
  needed, naive = set(), 0
  for number in (1, 5):
    methods = [METHODS.get(m) for m in TABLES[number].methods]
    for m in methods:
      for spec in m.specs(ctx, 0).values():
        keys = [s.key for s in spec.all_specs()]
        needed.update(keys)
        naive += len(keys)
    _log(f"reuse: table {number} on MovieLens (smoke preset, seed 0)")
    protocol.run(ctx, methods, [0])
  performed = len(ctx.trained)
  return {"component_reuse": len(set(ctx.trained)) / performed if performed else float("nan"),
          "detail": {"trainings_performed": performed, "unique_components": len(needed),
                     "trainings_without_sharing": naive}}


def peak_rss(workdir: Path, methods: str) -> dict:
  cmd = [sys.executable, str(REPO / "run_benchmark.py"), "--dataset", "movielens_genre",
         "--method", methods, "--seeds", "0", "--preset", "cpu", "--workdir", str(workdir)]
  _log("peak RSS: " + " ".join(cmd[1:]))
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  t = time.perf_counter()
  # Bounded: the cpu-preset run takes minutes; a hang must not hang the report.
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
  if proc.returncode != 0:
    raise RuntimeError(f"the cpu-preset run failed: {proc.stderr.strip().splitlines()[-1:]}")
  kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
  return {"peak_rss_gib": kib / 2 ** 20,
          "detail": {"command": " ".join(cmd[1:]), "wall_s": time.perf_counter() - t}}


def sweep_phases(workdir: Path, wall_s: float) -> dict[str, float]:
  """Where a sweep's wall time went, in seconds, from its store's component
  records: the frozen large model's tap cache; the first epoch of every
  training (compilation included); the later epochs with their ID-validation
  passes; prediction at the end of training; deferred prediction (test_id and
  OOD when a method asked); and the rest of the wall time (start-up, data
  loading, methods' own predictions such as soups' and WiSE-FT's, tables)."""
  out = dict.fromkeys(("tap_cache", "first_epochs", "later_epochs", "final_prediction",
                       "deferred_prediction"), 0.0)
  compile_s, n = 0.0, 0
  for f in (workdir / "runs" / "components").rglob("*.json"):
    t = json.loads(f.read_text()).get("timings", {})
    out["tap_cache"] += float(t.get("cache_s", 0.0))
    out["first_epochs"] += float(t.get("first_epoch_s", 0.0))
    out["later_epochs"] += float(t.get("train_s", 0.0)) - float(t.get("first_epoch_s", 0.0))
    out["final_prediction"] += float(t.get("eval_s", 0.0))
    out["deferred_prediction"] += float(t.get("deferred_eval_s", 0.0))
    compile_s += float(t.get("compile_s", 0.0)) + float(t.get("deferred_compile_s", 0.0))
    n += 1
  out["components"] = sum(out.values())
  out["rest"] = wall_s - out["components"]
  # Inside the phases above, not added to them: making compiled programs.
  out["compile_within_components"] = compile_s
  out["component_records"] = n
  return out


def _method_scores(workdir: Path) -> dict:
  out = {}
  for f in sorted((workdir / "runs" / "methods").rglob("*.json")):
    r = json.loads(f.read_text())
    out[(r["method"], r["seed"])] = r.get("scores")
  return out


# How the harness ran a sweep before its sweep speed-ups: every model run over
# test_id and OOD when it finishes training.
BEFORE_FLAGS = ("--config.defer_eval=false",)
# Method scores of the two runs agree to this: deferral is bit-identical.
# (The opt-in bottom_cache and trim_batches move bfloat16 numbers; they are
# not part of the default sweep.)
SCORE_TOL = 0.0


def same_scores(a: dict, b: dict, tol: float = SCORE_TOL) -> bool:
  """Whether two runs' method scores name the same results and agree to ``tol``."""
  if a.keys() != b.keys():
    return False
  for k in a:
    x, y = a[k] or {}, b[k] or {}
    if x.keys() != y.keys() or any(
        not np.isclose(float(x[s]), float(y[s]), rtol=0, atol=tol, equal_nan=True)
        for s in x):
      return False
  return True


def sweep(workdir: Path, args: str = SWEEP_ARGS, timeout_s: float = 3 * 3600,
          warm: bool = False) -> dict:
  """``args`` run from an empty workdir as the harness ran it before
  (``BEFORE_FLAGS``) and as it runs now, one after the other, each in a
  child process, each from an empty compilation cache: the wall-time ratio,
  the components' share of the wall time now, their compile seconds, and a
  check that both give the same numbers (to ``SCORE_TOL``). ``warm``: "now"
  once more on the compiled programs it left (what compiling still costs
  with a warm persistent cache)."""
  walls, phases, scores = {}, {}, {}
  runs = [("before", BEFORE_FLAGS, "before"), ("now", (), "now")]
  if warm:  # the same sweep again in a new workdir, on the compiled programs "now" left
    runs.append(("now_warm", (), "now"))
  for name, flags, jit_cache in runs:
    wd = workdir / name
    cmd = [sys.executable, str(REPO / "run_benchmark.py"), *args.split(), *flags,
           "--workdir", str(wd)]
    _log(f"sweep ({name}): " + " ".join(cmd[1:]))
    # Each run starts from its own empty compilation cache (the warm rerun
    # reuses "now"'s), so that neither pays or skips the other's compiling.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_COMPILATION_CACHE_DIR": str(workdir / f"jit_cache_{jit_cache}")}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    walls[name] = time.perf_counter() - t
    if proc.returncode != 0:
      raise RuntimeError(f"the sweep ({name}) failed: {proc.stderr.strip().splitlines()[-1:]}")
    phases[name] = sweep_phases(wd, walls[name])
    scores[name] = _method_scores(wd)
  if not same_scores(scores["before"], scores["now"]):
    raise RuntimeError(f"the sweep's method scores differ with {' '.join(BEFORE_FLAGS)} "
                       f"and without")
  detail = {"args": args, "wall_s_before": walls["before"], "wall_s_now": walls["now"],
            "sweep_efficiency": phases["now"]["components"] / walls["now"],
            "sweep_efficiency_before": phases["before"]["components"] / walls["before"],
            "phases_s_before": phases["before"], "phases_s_now": phases["now"],
            "method_results": len(scores["now"]), "same_scores": True}
  if warm:
    detail.update(wall_s_now_warm=walls["now_warm"], phases_s_now_warm=phases["now_warm"],
                  same_scores_warm=scores["now_warm"] == scores["now"])
  return {"sweep_speedup": walls["before"] / walls["now"], "detail": detail}


# -- report ------------------------------------------------------------------------------

def met(key: str, value: float) -> bool:
  op, target = TARGETS[key]
  return {">=": value >= target, "<=": value <= target,
          "==": abs(value - target) < 1e-9}[op]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--json", type=Path, help="write the results here")
  ap.add_argument("--only", default=None,
                  help=f"comma-separated subset of {','.join(SECTIONS)} (default: all but "
                       f"accel on CPU, accel alone on an accelerator)")
  ap.add_argument("--rss_methods", default="lp,levi",
                  help="methods of the cpu-preset MovieLens run whose peak RSS is measured")
  ap.add_argument("--sweep_warm", action="store_true",
                  help="sweep: run the current harness once more on the compiled programs "
                       "its first run left (compile cost with a warm cache)")
  ap.add_argument("--sweep_args", default=SWEEP_ARGS,
                  help="sweep: the run_benchmark.py arguments timed before and now")
  ap.add_argument("--accel_batch", type=int, default=64, help="accel: examples per step")
  ap.add_argument("--accel_seq", type=int, default=64, help="accel: tokens per example")
  ap.add_argument("--accel_backbones", default=",".join(ACCEL_BACKBONES),
                  help="accel: comma-separated backbones")
  a = ap.parse_args(argv)
  if a.only is None:
    import jax
    only = list(CPU_SECTIONS if jax.default_backend() == "cpu" else ("accel",))
  else:
    only = [s.strip() for s in a.only.split(",") if s.strip()]
  bad = [s for s in only if s not in SECTIONS]
  if bad:
    print(f"error: unknown --only section(s) {', '.join(bad)}; use {','.join(SECTIONS)}",
          file=sys.stderr)
    return 2
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  results, details = {}, {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    runs = {"ft_step": lambda: ft_step(), "cached_epoch": lambda: cached_epoch(tmp / "c"),
            "pipeline": lambda: pipeline(tmp / "p"), "reuse": lambda: reuse(tmp / "r"),
            "rss": lambda: peak_rss(tmp / "m", a.rss_methods),
            "sweep": lambda: sweep(tmp / "s", a.sweep_args, warm=a.sweep_warm),
            "accel": lambda: accel(batch=a.accel_batch, seq=a.accel_seq, backbones=tuple(
                b.strip() for b in a.accel_backbones.split(",") if b.strip()))}
    for name in only:
      t = time.perf_counter()
      got = runs[name]()
      details[name] = {**got.pop("detail", {}), "section_s": time.perf_counter() - t}
      results.update(got)
  import jax
  out = {"results": {k: {"value": v, "target": f"{TARGETS[k][0]} {TARGETS[k][1]}",
                         "met": met(k, v)} for k, v in results.items()},
         "detail": details,
         "machine": {"devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count(),
                     "jax": jax.__version__}}
  for k, r in out["results"].items():
    print(f"{k:22s} {r['value']:10.3f}   target {r['target']:8s} "
          f"{'met' if r['met'] else 'NOT met'}")
  if "sweep" in details:
    d = details["sweep"]
    print(f"{'sweep_efficiency':22s} {d['sweep_efficiency']:10.3f}   (before: "
          f"{d['sweep_efficiency_before']:.3f}; wall {d['wall_s_before']:.0f} s -> "
          f"{d['wall_s_now']:.0f} s)")
  if a.json:
    from benchmark.store import atomic_write_text
    atomic_write_text(a.json, json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {a.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
