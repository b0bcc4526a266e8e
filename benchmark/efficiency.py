"""Table 3 (and the paper's Tables 15-16), measured rather than quoted: per
method and backbone, trainable and inference parameter counts, FLOPs per
example from XLA's compiled cost analysis, and training and inference time
per example timed on the machine at hand.

Counting conventions:
- Parameters: every ``nnx.Param`` of the networks a method trains (each
  component it needs, dependencies included; A1 trains two FT networks) and
  of those that run at inference (FT+ZeroShot: one network, the mixed weights).
- FLOPs: XLA's ``cost_analysis()["flops"]`` of the inference forward, per
  example, at the backbone's configured sequence length with every position a
  token. XLA counts a multiply-add as 2 FLOPs; the paper's 33G (T5x-small)
  and 17.5G (ViT-B) count multiply-adds, so the table gives MACs = FLOPs / 2
  as well.
- Time: one jitted training step (or inference forward) of the component as
  built here, random weights, ``batch`` examples, median of ``repeats`` timed
  calls after a warm-up; frozen large models are run, not read from the tap
  cache (the cache makes LP and LEVI-pretrained cheaper still).
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark import trainer as T
from benchmark.data import ShiftSplits
from benchmark.models import params as P

# Backbones of the paper's Tables 15-16 (and the offline one), and the dataset
# whose inputs they are measured on.
TABLE3_BACKBONES = (("t5_small", "movielens_genre"), ("vit_b16", "imagenet_sketch"),
                    ("minilm_l6", "movielens_genre"))
TABLE3_METHODS = ("ft", "ht", "lp", "fs", "lp_ft", "ft_robust", "ft_fs", "ft_zeroshot",
                  "levi_pretrained", "levi", "levi_finetuned", "a1", "a2", "a3", "a4", "a5",
                  "lora", "levi_lora", "soup_uniform", "soup_greedy", "ratatouille",
                  "ratatouille_greedy")


def abstract_count(model) -> tuple[dict[str, int], int]:
  """Parameter sizes by flat name, for real or shape-only (eval_shape) models."""
  pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  sizes = {P.path_str(p): int(np.prod(v.shape)) for p, v in P._walk(pure)}
  return sizes, sum(sizes.values())


def counts(model, rules) -> tuple[int, int]:
  """(trainable, total) parameters of an abstract or real model."""
  sizes, total = abstract_count(model)
  match = P.rule_matcher(rules)
  return sum(n for k, n in sizes.items() if match(k)), total


def token_splits(splits, max_len: int):
  """``splits`` with every large view replaced by ``max_len`` tokens of id 1,
  all valid: the shapes the backbone sees, without a tokenizer."""
  def view(v):
    n = len(next(iter(v.values())))
    return {"ids": np.ones((n, max_len), np.int32), "mask": np.ones((n, max_len), np.int32)}
  return splits.map_large(view)


def image_splits(name: str, size: int, num_classes: int, n: int = 32):
  """Zero images of ``size`` pixels with ``num_classes`` labels in every
  split: the shapes a vision backbone sees, without the dataset's files
  (Table 3 counts and times networks, not data)."""
  from benchmark.data import AuxTask, DatasetInfo, ShiftSplits, Split
  img = np.zeros((n, size, size, 3), np.uint8)
  split = lambda: Split({"image": img}, {"image": img}, np.arange(n, dtype=np.int32) % num_classes)
  info = DatasetInfo(name, "classification", num_classes, {"image": (size, size, 3)},
                     {"image": (size, size, 3)}, modality="image")
  # One auxiliary task of the same shape, so that Model Ratatouille's
  # networks are counted too.
  aux = AuxTask("shape", "zeros", "classification", num_classes, split(), split())
  return ShiftSplits(info, split(), split(), split(), {"shape": split()}, aux={"shape": aux})


def example_batch(ctx, n: int) -> dict:
  arrays = ctx.splits.test_id.arrays()
  return jax.tree.map(lambda a: np.asarray(a[:n]), arrays)


def forward_flops(model, batch: dict) -> float:
  """XLA's FLOPs for one inference forward of ``model`` on ``batch``, per example."""
  graphdef, state = nnx.split(model)
  fwd = jax.jit(lambda s, b: nnx.merge(graphdef, s)(b, train=False))
  abstract_batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), batch)
  return compiled_flops(fwd, state, abstract_batch) / len(batch["label"])


def compiled_flops(fn, *args) -> float:
  """XLA's FLOP count of jitted ``fn`` compiled for ``args`` (a multiply-add
  counts 2)."""
  cost = fn.lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


def _median_time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile and warm up
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def time_component(ctx, kind: str, batch: dict, repeats: int) -> tuple[float, float]:
  """Seconds per example of one training step and of one inference forward."""
  config = ctx.spec(kind, 0).config
  model, rules = ctx.model_and_rules(kind, config, nnx.Rngs(0))
  rules = tuple((r, bool(t)) for r, t in rules)
  graphdef, trainable, frozen, rest = nnx.split(model, T._filters(rules), nnx.Param, ...)
  fns = T._compiled(graphdef, rules, ctx.task, None,
                    (ctx.config.optimizer, 1e-4, float(ctx.config.momentum), 0.0), (0.0, 1.0))
  opt_state = fns["tx"].init(trainable)
  n = len(batch["label"])
  step = jax.jit(fns["train_step"])
  t_train = _median_time(lambda: step(trainable, opt_state, frozen, rest, batch), repeats)
  pred = jax.jit(fns["predict"])
  t_pred = _median_time(lambda: pred(trainable, frozen, rest, batch), repeats)
  return t_train / n, t_pred / n


def method_members(method, ctx) -> tuple[list[str], list[str]]:
  """Component kinds a method trains (dependencies too, pre-training not) and
  those that run at inference."""
  specs = method.specs(ctx, 0)
  # A dependency another member also lists (LP under LP->FT) is trained once.
  seen, uniq = set(), []
  for spec in specs.values():
    for s in spec.all_specs():
      if s.kind != "pretrain" and s.key not in seen:
        seen.add(s.key)
        uniq.append(s.kind)
  names = method.inference_members or tuple(specs)
  if getattr(method, "one_network", False):   # weight averages: one network runs
    names = tuple(specs)[:1]
  return uniq, [specs[n].kind for n in names]


def measure(ctx, methods, batch_size: int = 16, repeats: int = 3,
            timing: bool = True, progress=lambda m: None) -> list[dict[str, Any]]:
  """One row per method: parameter counts, FLOPs and times per example."""
  batch = example_batch(ctx, batch_size)
  per_kind: dict[str, dict[str, float]] = {}
  flops_by_arch: dict[tuple, float] = {}

  def kind_stats(kind: str) -> dict[str, float]:
    if kind in per_kind:
      return per_kind[kind]
    model, rules = ctx.structure(kind)
    n_train, n_total = counts(model, rules)
    arch = (type(model).__name__, n_total)  # same network, same FLOPs
    if arch not in flops_by_arch:
      progress(f"cost analysis of {kind} ({n_total / 1e6:.1f}M parameters)")
      flops_by_arch[arch] = forward_flops(model, batch)
    st = {"train_params": n_train, "params": n_total, "flops": flops_by_arch[arch],
          "train_s": float("nan"), "infer_s": float("nan")}
    if timing:
      progress(f"timing {kind}")
      st["train_s"], st["infer_s"] = time_component(ctx, kind, batch, repeats)
    per_kind[kind] = st
    return st

  rows = []
  for m in methods:
    train, infer = method_members(m, ctx)
    tr = [kind_stats(k) for k in train]
    inf = [kind_stats(k) for k in infer]
    rows.append({
        "method": m.name, "row": m.label,
        "train_params": int(sum(s["train_params"] for s in tr)),
        "infer_params": int(sum(s["params"] for s in inf)),
        "flops_per_example": float(sum(s["flops"] for s in inf)),
        "macs_per_example": float(sum(s["flops"] for s in inf)) / 2,
        "train_ms_per_example": 1e3 * float(sum(s["train_s"] for s in tr)),
        "infer_ms_per_example": 1e3 * float(sum(s["infer_s"] for s in inf)),
        "train_components": "+".join(train), "infer_components": "+".join(infer)})
  return rows


def human(n: float) -> str:
  if n != n:
    return "n/a"
  for div, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
    if abs(n) >= div:
      return f"{n / div:.3g}{suffix}"
  return f"{n:.3g}"


def to_latex(rows: list[dict], caption: str) -> str:
  from benchmark.tables import latex_escape
  lines = [r"\begin{table}", r"\centering",
           f"\\caption{{{latex_escape(caption)}}}", r"\label{tab:levi-3}",
           r"\begin{tabular}{lrrrrr}", r"\toprule",
           r"Method & Params (Train.) & Params (Infer.) & MACs & Train ms/ex & Infer ms/ex \\"]
  backbone = None
  for r in rows:
    if r["backbone"] != backbone:
      backbone = r["backbone"]
      lines += [r"\midrule", f"\\multicolumn{{6}}{{l}}{{\\textit{{{latex_escape(backbone)}}}}} \\\\"]
    if r.get("note"):
      lines.append(f"\\multicolumn{{6}}{{l}}{{{latex_escape(r['note'])}}} \\\\")
      continue
    cells = [latex_escape(r["row"]), human(r["train_params"]), human(r["infer_params"]),
             human(r["macs_per_example"]), f"{r['train_ms_per_example']:.2f}",
             f"{r['infer_ms_per_example']:.2f}"]
    lines.append(" & ".join(cells) + r" \\")
  lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
  return "\n".join(lines)


# -- cost estimates for --dry_run ------------------------------------------------
def _frozen_large(kind: str) -> bool:
  """The large model's taps come from the cache."""
  from benchmark.kinds import FROZEN, KINDS
  return KINDS.get(kind).large == FROZEN


def matmul_fn(dtype=jnp.float32, n: int = 2048):
  """An ``n``x``n`` ``jnp.dot`` on the default device, as a callable that
  waits for its result, and its FLOPs."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
  return (lambda: jax.block_until_ready(f(a))), 2 * n ** 3


def matmul_rate(dtype=jnp.float32, n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of an ``n``x``n`` ``jnp.dot`` on the default device: the practical
  limit the estimates and the MFU figures are relative to."""
  fn, flops = matmul_fn(dtype, n)
  return flops / _median_time(fn, repeats)


def estimate(ctx, specs) -> tuple[float, list[float]]:
  """XLA-counted FLOPs of training each spec (forward x3 for a training step;
  validation every epoch; one pass over test_id and OOD: an upper bound where
  that pass is deferred, since candidates dropped on ID validation skip it),
  plus, once per
  dataset, the frozen large model's pass over every split for the tap cache.
  Returns (total, per spec)."""
  s = ctx.splits
  batch = example_batch(ctx, 8)
  n_val = len(s.val)
  n_eval = len(s.test_id) + (len(s.ood_pool) if s.ood_pool is not None
                             else sum(len(g) for g in s.ood.values()))
  fwd: dict[str, float] = {}

  def flops(kind: str) -> float:
    if kind not in fwd:
      fwd[kind] = forward_flops(ctx.structure(kind)[0], batch)
    return fwd[kind]

  per, cache_needed = [], False
  for spec in specs:
    c = spec.config
    data, _ = ctx.training_data(spec)   # an auxiliary task's rows for aux_ft
    n_train = len(s.pretrain if spec.kind == "pretrain" else data.train)
    f = flops(spec.kind)
    if _frozen_large(spec.kind):
      f = max(f - flops("ft"), 0.0)  # the large forward is read from the cache
      cache_needed = True
    evals = (len(data.val) * int(c.get("epochs", 1)) // max(1, int(c.get("eval_every", 1)))
             + (n_eval if isinstance(data, ShiftSplits) else 0))
    per.append(3 * f * n_train * int(c.get("epochs", 1)) + f * evals)
  total = sum(per)
  if cache_needed:
    total += flops("ft") * (len(s.train) + n_val + n_eval)
  return total, per


# Wall time per FLOP-time (FLOPs at the measured matmul rate) of a component
# training, when no stored run calibrates it: XLA does not reach the plain
# matmul rate on small batches, evaluation runs at batch 1024, and cores are
# often shared. Measured on the 2-core CPU: 2-5.5x (MovieLens/MiniLM smoke, cores
# shared), against the best of a few matmul timings.
DEFAULT_FACTORS = (1.5, 6.0)
COMPILE_S_PER_BLOCK = (0.5, 5.0)  # compiling a kind's steps, once per process
# A training like a stored one takes up to this many times the slowest of
# them: measured 1.5-2x on the 2-core CPU when other work shared the cores.
TIMED_SLACK = 2.0


def _same_run(a: dict, b: dict) -> bool:
  """Configs of one training up to its learning rate: same cost."""
  return {k: v for k, v in a.items() if k != "lr"} == {k: v for k, v in b.items() if k != "lr"}


def wall_range(ctx, specs, per_flops, cache_flops: float, rate: float
               ) -> tuple[float, float, int, tuple[float, float]]:
  """(low, high) seconds of wall time for training ``specs``, how many of
  them were timed from stored runs, and the factor range used for the rest. A spec whose training the store holds
  at another seed or learning rate (same config otherwise) takes what those
  runs took (this machine's last runs); the others take their FLOPs at
  ``rate`` times a factor, calibrated by the timed ones where there are any
  (else ``DEFAULT_FACTORS``), plus compiling each kind once."""
  import json

  from benchmark.store import canonical
  timed: dict[str, list[tuple[dict, float]]] = {}
  for kind in {s.kind for s in specs}:
    folder = ctx.store.component_path(kind, "x").parent
    rows = []
    for p in sorted(folder.glob("*.json"))[:2000] if folder.is_dir() else []:
      try:
        rec = json.loads(p.read_text())
        t = rec["timings"]
        if rec.get("status") == "ok" and not t.get("resumed_from_epoch"):
          rows.append((rec["config"], float(t["total_s"])))
      except (OSError, ValueError, KeyError, TypeError):
        continue
    timed[kind] = rows
  measured, ratios = {}, []
  for i, (spec, f) in enumerate(zip(specs, per_flops)):
    mine = json.loads(canonical(spec.config))
    times = [t for c, t in timed[spec.kind] if _same_run(c, mine)]
    if times:
      measured[i] = (min(times), max(times))
      if f / rate >= 1.0:  # tiny trainings time their overheads, not their FLOPs
        ratios += [t / (f / rate) for t in times]
  lo_f, hi_f = (min(ratios), max(ratios)) if ratios else DEFAULT_FACTORS
  blocks = max(1, ctx.num_blocks())
  low = high = 0.0
  compiled = set()
  for i, (spec, f) in enumerate(zip(specs, per_flops)):
    if i in measured:  # other work on the cores made runs here 2x slower than stored ones
      low, high = low + 0.8 * measured[i][0], high + TIMED_SLACK * measured[i][1]
      continue
    low, high = low + lo_f * f / rate, high + hi_f * f / rate
    if spec.kind not in compiled:
      compiled.add(spec.kind)
      n = 1 if _frozen_large(spec.kind) else blocks
      low, high = low + COMPILE_S_PER_BLOCK[0] * n, high + COMPILE_S_PER_BLOCK[1] * n
  low, high = low + lo_f * cache_flops / rate, high + hi_f * cache_flops / rate
  return low, high, len(measured), (lo_f, hi_f)
