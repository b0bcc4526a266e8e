"""Components: trained networks that methods are recipes over.

A ``ComponentSpec`` names one training ("FT of backbone B on dataset D, lr l,
seed s") by its full config; its key is the hash of that config and of its
dependencies' keys. ``Context.component(spec)`` returns the stored result or
trains it once, so FT for a seed serves ``ft``, ``ft_zeroshot``, ``ft_robust``,
``ft_fs``, ``a1`` and ``a2`` alike, within one invocation and across them.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import nnx

from benchmark import locks, metrics
from benchmark import trainer as T
from benchmark.data import ShiftSplits
from benchmark.errors import UserError
from benchmark.models import BACKBONES, Backbone
from benchmark.models import params as P
from benchmark.models.small import EmbeddingMLP, SmallCNN
from benchmark.models.task import LargeWithHead, LayerwiseEnsemble
from benchmark.store import RunStore, key_of


class ComponentFailed(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
  kind: str
  seed: int
  config: Mapping[str, Any]
  deps: tuple[tuple[str, "ComponentSpec"], ...] = ()

  @functools.cached_property
  def key(self) -> str:
    return key_of({"kind": self.kind, "seed": self.seed, "config": self.config,
                   "deps": {n: d.key for n, d in self.deps}})

  def dep(self, name: str) -> "ComponentSpec":
    return dict(self.deps)[name]

  def all_specs(self) -> list["ComponentSpec"]:
    """This spec and everything it depends on, dependencies first."""
    out = []
    for _, d in self.deps:
      out += [s for s in d.all_specs() if s.key not in {o.key for o in out}]
    return out + [self]


@dataclasses.dataclass
class ComponentResult:
  spec: ComponentSpec
  record: dict
  store: RunStore

  @functools.cached_property
  def preds(self) -> dict[str, np.ndarray]:
    return self.store.read_arrays(self._path(".preds.npz"))

  @functools.cached_property
  def params(self) -> dict[str, np.ndarray]:
    """Trainable params of the best checkpoint (and state under ``state:``)."""
    return self.store.read_arrays(self._path(".npz"))

  def _path(self, suffix: str):
    p = self.store.component_path(self.spec.kind, self.spec.key)
    return p.with_name(p.stem + suffix)


# Large-model training modes: frozen, top half of the blocks (HT), all, or
# LoRA factors on the attention projections (Sec. 5.3).
FROZEN, LIGHT, FULL, LORA = "frozen", "light", "full", "lora"
# Model Ratatouille's components: a fine-tuning on an auxiliary task, and
# LP->FT on the target task started from one.
AUX_KINDS = ("aux_ft", "lp_ft_aux")
# Kinds trained at another kind's (chosen) learning rate.
LR_FROM = {"lp_ft_aux": "lp_ft"}


class Context:
  """Everything a method needs for one dataset: splits, config, backbone,
  the store, and get-or-train for components."""

  def __init__(self, splits: ShiftSplits, config, backbone: str, store: RunStore,
               progress: Callable[[str], None] | None = None, structure_only: bool = False):
    # structure_only: no weights, no tokenizer (large views must already be
    # token arrays); for counting parameters and FLOPs (Table 3).
    self.structure_only = structure_only
    self.splits = splits
    self.info = splits.info
    self.task = splits.info.task
    self.config = config
    self.backbone: Backbone = BACKBONES.get(backbone)
    if self.backbone.modality != self.info.modality:
      valid = [n for n in BACKBONES if BACKBONES.get(n).modality == self.info.modality]
      raise UserError(f"backbone {backbone!r} takes {self.backbone.modality} inputs but "
                      f"dataset {self.info.name!r} is {self.info.modality}; use "
                      f"--backbone {' or '.join(valid)}")
    self.store = store
    self.backbone_cfg = config.backbones[backbone]
    if self.backbone.prepare is not None and not structure_only:  # sentences -> tokens
      prep = lambda view: self.backbone.prepare(view["text"], self.backbone_cfg)
      splits = splits.map_large(prep)
      self.splits = splits
    self.fingerprint = splits.fingerprint()
    self.feature_cache = T.FeatureCache(store.root / "cache" / "taps")
    self.trained: list[str] = []   # component keys trained in this invocation
    self.loaded: list[str] = []    # component keys read back from the store
    self.claim_poll_s = 2.0        # how often to look for a record another process trains
    # Learning rates chosen per component kind (``sweep.select``), over config.lr.
    self.lr_override: dict[str, float] = {}
    self.methods_reused = 0        # method results read back from the store
    self.progress = progress or (lambda msg: None)
    self._results: dict[str, ComponentResult] = {}

  # -- specs ---------------------------------------------------------------
  def _common(self, kind: str, lr_key: str | None) -> dict:
    c = self.config
    out = {"dataset": self.info.name, "data": self.fingerprint,
           "optimizer": c.optimizer, "momentum": c.momentum if c.optimizer == "sgd" else None,
           "weight_decay": c.weight_decay, "batch_size": c.batch_size,
           "epochs": c.epochs, "eval_every": c.eval_every}
    if lr_key:
      out["lr"] = float(self.lr_override.get(kind, c.lr[lr_key]))
    if self.task == "regression":
      out["label_scale"] = list(self.label_scale())
    return out

  def _large_cfg(self) -> dict:
    cfg = {"name": self.backbone.name, "cfg": self.backbone_cfg.to_dict()}
    if self.backbone.source == "checkpoint":
      cfg["weights"] = self.backbone_weights_key()
    return cfg

  def backbone_weights_key(self) -> str:
    if self.backbone.weights_key is None:
      return self.backbone.name
    if self.structure_only:
      return "structure-only"
    if not hasattr(self, "_weights_key"):
      self._weights_key = self.backbone.weights_key(self.backbone_cfg)
    return self._weights_key

  def _small_cfg(self) -> dict:
    m = self.config.model
    if "image" in self.info.small_spec:
      return {"cnn": list(m.cnn_features)}
    return {"hidden": list(m.small_hidden), "embed_dim": m.embed_dim}

  def _lora_cfg(self) -> dict:
    if self.backbone.lora_targets is None:
      raise UserError(f"backbone {self.backbone.name} has no LoRA targets; the lora "
                      f"and levi_lora methods need a transformer backbone (e.g. "
                      f"vit_b16, minilm_l6, t5_small)")
    c = self.config.lora
    return {"rank": int(c.rank), "alpha": float(c.alpha),
            "targets": self.backbone.lora_targets}

  def _oov_cfg(self, reads_small: bool, trains_large: bool) -> dict:
    """``{"oov_rate": r}`` for a network whose trained embeddings read a
    categorical view (``cat_vocab``): the small model's, or the large model's
    when it trains; nothing otherwise, nor when the rate is 0."""
    rate = float(self.config.model.oov_rate)
    cats = ((reads_small and "cat_vocab" in self.info.small_spec)
            or (trains_large and "cat_vocab" in self.info.large_spec))
    return {"oov_rate": rate} if cats and rate > 0 else {}

  def pretrain_spec(self) -> ComponentSpec | None:
    if self.backbone.source != "pretrain_split":
      return None
    if self.splits.pretrain is None:
      raise UserError(f"backbone {self.backbone.name} is pre-trained on the dataset's "
                      f"pretrain rows, and {self.info.name} has none; add rows with "
                      f"split 'pretrain' or choose another --backbone")
    p = self.config.pretrain
    cfg = {"dataset": self.info.name, "data": self.fingerprint, "large": self._large_cfg(),
           "optimizer": "adam", "lr": float(self.config.lr.pretrain),
           "epochs": p.epochs, "batch_size": p.batch_size, **self._oov_cfg(False, True)}
    return ComponentSpec("pretrain", int(p.seed), cfg)

  def _with_pretrain(self, deps=()) -> tuple:
    pre = self.pretrain_spec()
    return (tuple(deps) + (("pretrain", pre),)) if pre is not None else tuple(deps)

  def spec(self, kind: str, seed: int) -> ComponentSpec:
    """The spec of component ``kind`` for ``seed`` under the current config."""
    s = self._spec(kind, seed)
    oov = self._oov_cfg(s.config.get("small") is not None,
                        "large" in s.config and kind != "lp" and s.config.get("mode") != FROZEN)
    return dataclasses.replace(s, config={**s.config, **oov}) if oov else s

  def _spec(self, kind: str, seed: int) -> ComponentSpec:
    large = self._large_cfg()
    if kind in ("ft", "ht", "lp", "fs"):
      cfg = {**self._common(kind, kind), "large": large}
      deps = self._with_pretrain() if kind != "fs" else ()
      if kind == "fs" and hasattr(self._large_template, "train_batch_norm"):
        cfg["batch_norm"] = "batch statistics"   # no pre-trained statistics to keep
      return ComponentSpec(kind, seed, cfg, deps)
    if kind == "lora":
      cfg = {**self._common(kind, "lora"), "large": large, "lora": self._lora_cfg()}
      return ComponentSpec(kind, seed, cfg, self._with_pretrain())
    if kind == "lp_ft":
      cfg = {**self._common(kind, "lp_ft"), "large": large}
      return ComponentSpec(kind, seed, cfg, self._with_pretrain((("lp", self.spec("lp", seed)),)))
    if kind in ("small", "small_multi"):
      cfg = {**self._common(kind, "small"), "small": self._small_cfg(),
             "adapter_hidden": self.config.model.adapter_hidden,
             "heads": 1 if kind == "small" else self.num_a5_heads()}
      return ComponentSpec(kind, seed, cfg)
    if kind.startswith("levi_") or kind == "a3":
      mode = {"levi_frozen": FROZEN, "levi_light": LIGHT, "levi_full": FULL,
              "levi_lora": LORA, "a3": LIGHT}[kind]
      cfg = {**self._common(kind, "levi"), "large": large, "mode": mode,
             "small": None if kind == "a3" else self._small_cfg(),
             "adapter_hidden": self.config.model.adapter_hidden,
             "taps": list(self.levi_taps()), "loss_weights": self.levi_loss_weights()}
      if mode == LORA:
        cfg["lora"] = self._lora_cfg()
      return ComponentSpec(kind, seed, cfg, self._with_pretrain())
    if kind in AUX_KINDS:
      return self.aux_spec(kind, self.aux_names()[0], seed)
    raise ValueError(f"unknown component kind {kind!r}")

  # -- auxiliary tasks (Model Ratatouille) ---------------------------------------
  def aux_names(self) -> list[str]:
    """The auxiliary tasks to recycle: ``ratatouille.aux`` (comma-separated),
    empty = every task the dataset declares."""
    declared = list(self.splits.aux)
    if not declared:
      raise UserError(f"dataset {self.info.name} declares no auxiliary tasks, which "
                      f"ratatouille fine-tunes on; use a dataset that does (e.g. "
                      f"synthetic_spurious, movielens_genre, or a tabular CSV with "
                      f"aux:<task>:train/val rows)")
    text = str(self.config.ratatouille.aux).strip()
    if not text:
      return declared
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in declared]
    if bad or not names:
      raise UserError(f"config ratatouille.aux={text!r}: {self.info.name} declares the "
                      f"auxiliary tasks {', '.join(declared)}; give some of them, or "
                      f"nothing for all")
    return list(dict.fromkeys(names))

  def aux_task(self, name: str):
    self.aux_names()  # the dataset has some
    if name not in self.splits.aux:
      raise UserError(f"{self.info.name} has no auxiliary task {name!r}; it declares "
                      f"{', '.join(self.splits.aux)}")
    return self.splits.aux[name]

  def aux_spec(self, kind: str, aux: str, seed: int) -> ComponentSpec:
    """``aux_ft``: the pre-trained large model fine-tuned on auxiliary task
    ``aux`` (a new head), once for all target seeds (``ratatouille.aux_seed``),
    as a recycled public fine-tuning would be. ``lp_ft_aux``: LP->FT on the
    target task from that fine-tuning's large model, with the target's LP
    head (Ramé et al.'s shared linear-probe initialisation)."""
    a = self.aux_task(aux)
    r = self.config.ratatouille
    if kind == "aux_ft":
      if not hasattr(self, "_aux_fp"):
        self._aux_fp = {}
      if aux not in self._aux_fp:
        self._aux_fp[aux] = a.fingerprint()
      cfg = {**self._common("aux_ft", None), "large": self._large_cfg(),
             "lr": float(r.aux_lr) or float(self.config.lr.ft),
             "aux": {"name": aux, "data": self._aux_fp[aux], "task": a.task,
                     "out_dim": a.out_dim}}
      del cfg["data"]        # trained on the auxiliary rows, not the target's
      cfg.pop("label_scale", None)
      cfg.update(self._oov_cfg(False, True))
      return ComponentSpec("aux_ft", int(r.aux_seed), cfg, self._with_pretrain())
    if kind == "lp_ft_aux":
      cfg = {**self._common("lp_ft", "lp_ft"), "large": self._large_cfg(), "aux": aux,
             **self._oov_cfg(False, True)}
      deps = (("lp", self.spec("lp", seed)), ("aux", self.aux_spec("aux_ft", aux, seed)))
      return ComponentSpec("lp_ft_aux", seed, cfg, self._with_pretrain(deps))
    raise ValueError(kind)

  def training_data(self, spec: ComponentSpec):
    """What ``spec`` trains and is evaluated on: the benchmark's splits, or
    an auxiliary task's (``aux_ft``); and its task."""
    if spec.kind == "aux_ft":
      a = self.aux_task(spec.config["aux"]["name"])
      return a, a.task
    return self.splits, self.task

  def layer_probe_spec(self, tap: int, seed: int) -> ComponentSpec:
    """Figure 4: one adapting layer on block ``tap`` of the frozen pre-trained
    large model, alone (no small model); trains on cached taps."""
    n = self._num_blocks()
    if not 0 <= tap < n:
      raise UserError(f"{self.backbone.name} has blocks 0..{n - 1}, not {tap}")
    cfg = {**self._common("layer_probe", "levi"), "large": self._large_cfg(),
           "mode": FROZEN, "small": None, "adapter_hidden": self.config.model.adapter_hidden,
           "taps": [tap], "loss_weights": None}
    return ComponentSpec("layer_probe", seed, cfg, self._with_pretrain())

  def spec_with_lr(self, kind: str, seed: int, lr: float) -> ComponentSpec:
    """``spec(kind, seed)`` trained at learning rate ``lr`` (a grid point)."""
    saved = self.lr_override.get(kind)
    self.lr_override[kind] = float(lr)
    try:
      return self.spec(kind, seed)
    finally:
      if saved is None:
        del self.lr_override[kind]
      else:
        self.lr_override[kind] = saved

  # -- LEVI settings ---------------------------------------------------------
  @functools.cached_property
  def _large_template(self) -> nnx.Module:
    """The large model's structure, without allocating its weights."""
    return nnx.eval_shape(lambda: self.build_large(nnx.Rngs(0)))

  def _num_blocks(self) -> int:
    return self._large_template.num_blocks

  def levi_taps(self) -> tuple[int, ...]:
    n = self._num_blocks()
    t = str(self.config.levi.taps).strip()
    if t == "all":
      return tuple(range(n))
    try:
      taps = tuple(int(x) for x in t.split(","))
    except ValueError:
      raise UserError(f"config levi.taps={t!r}: use 'all' or comma-separated block "
                      f"indices, e.g. --config.levi.taps=0,2")
    if not taps or any(not -n <= x < n for x in taps):
      raise UserError(f"config levi.taps={t!r}: {self.backbone.name} has blocks 0..{n - 1}")
    return tuple(x % n for x in taps)

  def levi_loss_weights(self) -> list[float] | None:
    w = str(self.config.levi.loss_weights).strip()
    if not w:
      return None
    ws = [float(x) for x in w.split(",")]
    if len(ws) != len(self.levi_taps()):
      raise UserError(f"config levi.loss_weights has {len(ws)} weights for "
                      f"{len(self.levi_taps())} adapting layers; give one per tap")
    s = sum(ws)
    return [x / s for x in ws]

  def num_a5_heads(self) -> int:
    return int(self.config.model.a5_heads) or len(self.levi_taps())

  # -- models -----------------------------------------------------------------
  def build_large(self, rngs: nnx.Rngs) -> nnx.Module:
    return self.backbone.build(self.info, self.backbone_cfg, rngs)

  def build_small(self, rngs: nnx.Rngs) -> nnx.Module:
    m = self.config.model
    if "image" in self.info.small_spec:  # vision: the 4-layer CNN (App. D.2)
      return SmallCNN(self.info.small_spec, tuple(m.cnn_features), rngs=rngs)
    return EmbeddingMLP(self.info.small_spec, tuple(m.small_hidden), int(m.embed_dim), rngs=rngs)

  def pretrained_large(self) -> dict[str, np.ndarray]:
    """The pre-trained large model's params (and batch-norm statistics), keyed
    relative to the large model."""
    if not hasattr(self, "_pretrained"):
      pre = self.pretrain_spec()
      if pre is not None:
        res = self.component(pre)
        self._pretrained = {k[len("large/"):]: v for k, v in res.params.items()
                            if k.startswith("large/")}
      else:
        large = self.build_large(nnx.Rngs(0))
        self.backbone.load(self.backbone_cfg, large)
        # Batch-norm statistics too (EfficientNet): they are the pre-trained
        # model as much as its parameters are.
        self._pretrained = P.flat_state(nnx.state(large, (nnx.Param, nnx.BatchStat)))
    return self._pretrained

  def load_pretrained(self, model) -> None:
    P.load_params(model.large, self.pretrained_large(),
                  source=f"pre-trained {self.backbone.name}", strict=True)

  def build_large_lora(self, config: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    """The large model with LoRA factors on its attention projections."""
    from benchmark.models.lora import add_lora
    large = self.build_large(rngs)
    c = config["lora"]
    add_lora(large, c["targets"], c["rank"], c["alpha"], rngs, what=self.backbone.name)
    return large

  def top_half_rules(self, large) -> list[tuple[str, bool]]:
    """Light-tuning: the top half of the large model's blocks train (HT)."""
    pats = large.block_patterns()
    top = pats[len(pats) // 2:]
    return [(rf"^large/{p}", True) for p in top] + [(r"^large/", False)]

  def model_and_rules(self, kind: str, config: Mapping[str, Any], rngs: nnx.Rngs
                      ) -> tuple[nnx.Module, list[tuple[str, bool]]]:
    """Component ``kind``'s network (random weights) and freezing rules, from
    its spec config; nothing loaded (``structure`` runs it without weights)."""
    out_dim = self.info.out_dim
    if kind == "pretrain":
      return LargeWithHead(self.build_large(rngs), out_dim, rngs=rngs), [(r".*", True)]
    if kind == "lora":
      from benchmark.models.lora import LORA_RULE
      model = LargeWithHead(self.build_large_lora(config, rngs), out_dim, rngs=rngs)
      return model, [(r"^head/", True), (r"^large/.*" + LORA_RULE, True), (r"^large/", False)]
    if kind == "aux_ft":   # the auxiliary task's own head
      return (LargeWithHead(self.build_large(rngs), int(config["aux"]["out_dim"]), rngs=rngs),
              [(r".*", True)])
    if kind in ("ft", "ht", "lp", "fs", "lp_ft", "lp_ft_aux"):
      model = LargeWithHead(self.build_large(rngs), out_dim, rngs=rngs)
      if kind == "fs" and hasattr(model.large, "train_batch_norm"):
        model.large.train_batch_norm = True
      rules = {"ft": [(r".*", True)], "fs": [(r".*", True)], "lp_ft": [(r".*", True)],
               "lp_ft_aux": [(r".*", True)],
               "lp": [(r"^head/", True), (r"^large/", False)],
               "ht": [(r"^head/", True)] + self.top_half_rules(model.large)}[kind]
      return model, rules
    if kind in ("small", "small_multi"):
      model = LayerwiseEnsemble(None, self.build_small(rngs), None, config["heads"],
                                config["adapter_hidden"], out_dim, rngs=rngs)
      return model, [(r".*", True)]
    if kind.startswith("levi_") or kind in ("a3", "layer_probe"):
      mode = config["mode"]
      large = self.build_large_lora(config, rngs) if mode == LORA else self.build_large(rngs)
      small = self.build_small(rngs) if config["small"] is not None else None
      model = LayerwiseEnsemble(large, small, config["taps"], 0, config["adapter_hidden"],
                                out_dim, rngs=rngs)
      if mode == LORA:
        from benchmark.models.lora import LORA_RULE
        rules = [(r"^large/.*" + LORA_RULE, True), (r"^large/", False)]
      else:
        rules = ([(r"^large/", False)] if mode == FROZEN else
                 self.top_half_rules(large) if mode == LIGHT else [])
      return model, rules + [(r".*", True)]
    raise ValueError(kind)

  def structure(self, kind: str) -> tuple[nnx.Module, list[tuple[str, bool]]]:
    """``model_and_rules`` of ``kind`` as shapes only (``nnx.eval_shape``):
    for counting parameters and compiling cost analyses without weights."""
    config = (self.pretrain_spec() if kind == "pretrain" else self.spec(kind, 0)).config
    holder = {}

    def make():
      model, rules = self.model_and_rules(kind, config, nnx.Rngs(0))
      holder["rules"] = rules
      return model
    model = nnx.eval_shape(make)
    return model, holder["rules"]

  def build(self, spec: ComponentSpec) -> tuple[nnx.Module, list[tuple[str, bool]], dict]:
    """Model (initialised, pre-trained parts loaded), freezing rules and
    extra ``TrainJob`` fields for ``spec``."""
    kind = spec.kind
    model, rules = self.model_and_rules(kind, spec.config, nnx.Rngs(spec.seed))
    extra: dict[str, Any] = {}
    if kind == "pretrain":
      return model, rules, {"select_on_val": False, "train_split": "pretrain",
                            "batch_size": spec.config["batch_size"]}
    if kind in ("ft", "ht", "lp", "lp_ft", "lp_ft_aux", "lora", "aux_ft"):
      self.load_pretrained(model)
      if kind == "lp_ft_aux":   # the large model as the auxiliary fine-tuning left it
        aux = self.component(spec.dep("aux")).params
        strip = lambda k: k[len("state:"):] if k.startswith("state:") else k
        P.load_params(model, {strip(k): v for k, v in aux.items()
                              if strip(k).startswith("large/")},
                      source="auxiliary fine-tuning", strict=True)
      if kind in ("lp_ft", "lp_ft_aux"):
        lp = self.component(spec.dep("lp")).params
        P.load_params(model, {k: v for k, v in lp.items() if k.startswith("head/")},
                      source="LP head", strict=True)
      if kind == "lp":
        extra["cache_key"] = self._pretrained_key()
    if kind.startswith("levi_") or kind in ("a3", "layer_probe"):
      self.load_pretrained(model)
      if spec.config["mode"] == FROZEN:
        extra["cache_key"] = self._pretrained_key()
      if spec.config["loss_weights"] is not None:
        extra["head_weights"] = tuple(spec.config["loss_weights"])
    return model, rules, extra

  def _pretrained_key(self) -> str:
    """Names the frozen large model's weights and the data its taps are of."""
    pre = self.pretrain_spec()
    weights = pre.key if pre is not None else self.backbone_weights_key()
    return f"{self.backbone.name}-{weights}-{self.fingerprint}"

  # -- get or train -------------------------------------------------------------
  def component(self, spec: ComponentSpec) -> ComponentResult:
    if spec.key in self._results:
      return self._results[spec.key]
    path = self.store.component_path(spec.kind, spec.key)
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
      self.loaded.append(spec.key)
      # A process killed between writing the record and removing its
      # mid-training checkpoint leaves the checkpoint behind: not needed.
      stale = self.store.root / "ckpt" / spec.kind / spec.key
      if stale.exists():
        import shutil
        shutil.rmtree(stale, ignore_errors=True)
    else:
      rec = self._claim_and_train(spec, path)
    if rec.get("status") == "failed":
      raise ComponentFailed(f"{spec.kind} (seed {spec.seed}) failed: {rec.get('reason')}")
    res = ComponentResult(spec, rec, self.store)
    self._results[spec.key] = res
    return res

  def _claim_and_train(self, spec: ComponentSpec, path) -> dict:
    """Trains ``spec`` under a claim in the store, so that processes sharing
    the store (``--shard``) train each component once: a process that finds
    the claim held waits for the record instead."""
    lock = path.with_name(spec.key + ".lock")
    waited = False
    while True:
      claim = locks.try_claim(lock)
      if claim is not None:
        with claim:
          rec = self.store.read(path)  # finished while we waited for the claim?
          if rec is not None:
            self.loaded.append(spec.key)
            return rec
          return self._train(spec)
      if not waited:
        self.progress(f"waiting for {spec.kind} (seed {spec.seed}), being trained by "
                      f"{locks.describe(lock)}")
        waited = True
      time.sleep(self.claim_poll_s)
      rec = self.store.read(path)
      if rec is not None:
        self.loaded.append(spec.key)
        return rec

  def _train(self, spec: ComponentSpec) -> dict:
    c = self.config
    model, rules, extra = self.build(spec)
    data, task = self.training_data(spec)
    job = T.TrainJob(
        model=model, rules=rules, task=task, optimizer=spec.config.get("optimizer", c.optimizer),
        lr=spec.config["lr"], epochs=spec.config["epochs"],
        batch_size=extra.pop("batch_size", c.batch_size), seed=spec.seed,
        momentum=c.momentum, weight_decay=c.weight_decay, eval_every=c.eval_every,
        steps_per_dispatch=c.steps_per_dispatch, eval_batch_size=c.eval_batch_size,
        label_scale=T.label_scale(task, np.asarray(
            getattr(data, extra.get("train_split", "train")).label)),
        oov_rate=float(spec.config.get("oov_rate", 0.0)),
        desc=f"{spec.kind} s{spec.seed}",
        checkpoint=self.train_checkpoint(spec), **extra)
    self.progress(f"training {spec.kind} (seed {spec.seed}) [{spec.key}]")
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
    labels = {k: np.asarray(s.label) for k, s in data.eval_splits().items()}
    classes = self.info.eval_classes if data is self.splits else (lambda k: None)
    scores = {k: metrics.score(task, p, labels[k], classes(k)) for k, p in r.preds.items()}
    arrays = dict(r.trainable)
    arrays.update({f"state:{k}": v for k, v in r.state.items()})
    self.store.write_arrays(path.with_name(spec.key + ".npz"), arrays)
    if r.preds:
      self.store.write_arrays(path.with_name(spec.key + ".preds.npz"), r.preds)
    rec = {**base, "status": "ok", "metric": data.metric if data is not self.splits
           else self.info.metric, "scores": scores,
           "best_epoch": r.best_epoch, "val_curve": r.val_curve, "loss_curve": r.loss_curve,
           "n_trainable": r.n_trainable, "n_params": r.n_params, "steps": r.steps,
           "timings": {**r.timings, "total_s": time.perf_counter() - t0},
           "devices": jax.device_count()}
    self.store.write(path, rec)
    self._drop_checkpoint(job)
    self.trained.append(spec.key)
    return rec

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

  # -- inference with given params ------------------------------------------------
  def label_scale(self, split: str = "train") -> tuple[float, float]:
    return T.label_scale(self.task, np.asarray(getattr(self.splits, split).label))

  def predict(self, model: nnx.Module, only_val: bool = False) -> dict[str, np.ndarray]:
    """Predictions of ``model`` as it stands, on every eval split (or on the ID
    validation split alone, for model selection)."""
    splits = {"val": self.splits.val} if only_val else self.splits
    return T.predict(model, self.task, splits, self.config.eval_batch_size,
                     self.label_scale())
