"""The built-in component kinds: the networks the paper's rows are made of.

FT, HT, LP, FS, LP->FT and LoRA (a large model with a linear head), the small
model alone (A4, A5), LEVI's layer-wise ensembles (frozen, light-tuned, fully
trained or LoRA-tuned large model; A3 without the small model; Figure 4's
single-layer probes), the pre-training of a backbone trained here, and Model
Ratatouille's auxiliary fine-tunings. Each is one ``ComponentKind``; a new
kind is declared the same way, in its own module (``docs/extending.md``).
"""
from __future__ import annotations

from benchmark.errors import UserError
from benchmark.kinds import FROZEN, FULL, LIGHT, LORA, ComponentKind, register_kind
from benchmark.models.task import LargeWithHead, LayerwiseEnsemble

TRAIN_ALL = [(r".*", True)]


# -- a large model with a linear head -------------------------------------------

def _head_config(kind):
  def config(specs, seed, **_):
    return {**specs.common(kind), "large": specs.large_cfg()}
  return config


def head_network(rules):
  """A ``LargeWithHead`` network with ``rules(nets, large)`` as its freezing."""
  def network(nets, config, rngs):
    model = LargeWithHead(nets.build_large(rngs), nets.out_dim, rngs=rngs)
    return model, rules(nets, model.large)
  return network


def _lp_dep(specs, seed, **_):
  return (("lp", specs.spec("lp", seed)),)


def _init_lp_head(runner, spec, model):
  runner.load_from(model, spec.dep("lp"), "head/", "LP head")
  return {}


register_kind(ComponentKind(
    "ft", "all of the pre-trained large model and a new head", _head_config("ft"),
    head_network(lambda nets, large: TRAIN_ALL), lr_key="ft", default_lr=1e-3,
    averageable=True))
register_kind(ComponentKind(
    "ht", "the top half of the large model's blocks and the head", _head_config("ht"),
    head_network(lambda nets, large: [(r"^head/", True)] + nets.top_half_rules(large)),
    lr_key="ht", default_lr=1e-3, large=LIGHT, averageable=True))
register_kind(ComponentKind(
    "lp", "the head on the frozen large model (its taps cached)", _head_config("lp"),
    head_network(lambda nets, large: [(r"^head/", True), (r"^large/", False)]),
    lr_key="lp", default_lr=1e-2, grid="lr_grid_lp", large=FROZEN, averageable=True))
register_kind(ComponentKind(
    "lp_ft", "FT started from the LP head (Kumar et al. 2022b)", _head_config("lp_ft"),
    head_network(lambda nets, large: TRAIN_ALL), lr_key="lp_ft", default_lr=1e-4,
    averageable=True, deps=_lp_dep, init=_init_lp_head))


def _fs_config(specs, seed, **_):
  cfg = {**specs.common("fs"), "large": specs.large_cfg()}
  if hasattr(specs.large_template, "train_batch_norm"):
    cfg["batch_norm"] = "batch statistics"   # no pre-trained statistics to keep
  return cfg


def _fs_network(nets, config, rngs):
  model = LargeWithHead(nets.build_large(rngs), nets.out_dim, rngs=rngs)
  if hasattr(model.large, "train_batch_norm"):
    model.large.train_batch_norm = True
  return model, TRAIN_ALL


register_kind(ComponentKind(
    "fs", "the large architecture from random initialisation", _fs_config, _fs_network,
    lr_key="fs", default_lr=1e-3, pretrained=False,
    not_averageable="starts from random weights, not from the pre-trained model"))


def _lora_rules():
  from benchmark.models.lora import LORA_RULE
  return [(r"^large/.*" + LORA_RULE, True), (r"^large/", False)]


def _lora_network(nets, config, rngs):
  model = LargeWithHead(nets.build_large_lora(config, rngs), nets.out_dim, rngs=rngs)
  return model, [(r"^head/", True)] + _lora_rules()


register_kind(ComponentKind(
    "lora", "rank-r factors on the attention projections and the head (Sec. 5.3)",
    lambda specs, seed, **_: {**specs.common("lora"), "large": specs.large_cfg(),
                              "lora": specs.lora_cfg()},
    _lora_network, lr_key="lora", default_lr=1e-3, large=LORA,
    not_averageable="has LoRA factors, another architecture than the fine-tuned model"))


# -- the pre-training of a backbone trained here --------------------------------

def _pretrain_config(specs, seed, **_):
  p, c = specs.config.pretrain, specs.config
  return {"dataset": specs.info.name, "data": specs.fingerprint, "large": specs.large_cfg(),
          "optimizer": "adam", "lr": float(c.lr.pretrain), "epochs": p.epochs,
          "batch_size": p.batch_size}


register_kind(ComponentKind(
    "pretrain", "the backbone pre-trained on the dataset's pretrain rows", _pretrain_config,
    lambda nets, config, rngs: (LargeWithHead(nets.build_large(rngs), nets.out_dim,
                                              rngs=rngs), TRAIN_ALL),
    lr_key="pretrain", default_lr=1e-3, tuned=False, pretrained=False, capped=False,
    seed=lambda specs, seed: int(specs.config.pretrain.seed),
    init=lambda runner, spec, model: {"select_on_val": False, "train_split": "pretrain",
                                      "batch_size": spec.config["batch_size"]}))


# -- the small model alone, and LEVI's layer-wise ensembles ----------------------

def _small_kind(name, heads, description):
  def config(specs, seed, **_):
    return {**specs.common(name), "small": specs.small_cfg(),
            "adapter_hidden": specs.config.model.adapter_hidden, "heads": heads(specs)}

  def network(nets, config, rngs):
    return LayerwiseEnsemble(None, nets.build_small(rngs), None, config["heads"],
                             config["adapter_hidden"], nets.out_dim, rngs=rngs), TRAIN_ALL
  register_kind(ComponentKind(name, description, config, network, lr_key="small",
                              default_lr=1e-3, large=None, small=True, pretrained=False))


_small_kind("small", lambda specs: 1, "the small model with one adapting layer (A4)")
_small_kind("small_multi", lambda specs: specs.num_a5_heads(),
            "the small model with several adapting layers, averaged (A5)")


def ensemble_config(specs, kind, mode, small=True, taps=None, loss_weights=True):
  """The spec config of a layer-wise ensemble: LEVI's, or a kind built like it."""
  cfg = {**specs.common(kind), "large": specs.large_cfg(), "mode": mode,
         "small": specs.small_cfg() if small else None,
         "adapter_hidden": specs.config.model.adapter_hidden,
         "taps": list(specs.levi_taps() if taps is None else taps),
         "loss_weights": specs.levi_loss_weights() if loss_weights else None}
  if mode == LORA:
    cfg["lora"] = specs.lora_cfg()
  return cfg


def ensemble_large(nets, config, rngs):
  """The large model of a layer-wise ensemble and its freezing rules."""
  mode = config["mode"]
  large = nets.build_large_lora(config, rngs) if mode == LORA else nets.build_large(rngs)
  rules = (_lora_rules() if mode == LORA else [(r"^large/", False)] if mode == FROZEN
           else nets.top_half_rules(large) if mode == LIGHT else [])
  return large, rules


def _ensemble_network(nets, config, rngs):
  large, rules = ensemble_large(nets, config, rngs)
  small = nets.build_small(rngs) if config["small"] is not None else None
  model = LayerwiseEnsemble(large, small, config["taps"], 0, config["adapter_hidden"],
                            nets.out_dim, rngs=rngs)
  return model, rules + TRAIN_ALL


def _levi_kind(name, mode, description, small=True):
  register_kind(ComponentKind(
      name, description, lambda specs, seed, **_: ensemble_config(specs, name, mode, small),
      _ensemble_network, lr_key="levi", default_lr=1e-3, large=mode, small=small))


_levi_kind("levi_frozen", FROZEN, "LEVI on the frozen pre-trained large model")
_levi_kind("levi_light", LIGHT, "LEVI, large model light-tuned (top half of its blocks)")
_levi_kind("levi_full", FULL, "LEVI, large model fully trained with LEVI's loss")
_levi_kind("levi_lora", LORA, "LEVI, large model LoRA-tuned jointly")
_levi_kind("a3", LIGHT, "LEVI's adapting layers on the taps alone, no small model (A3)",
           small=False)


def _probe_config(specs, seed, tap=0, **_):
  n = specs.num_blocks()
  if not 0 <= tap < n:
    raise UserError(f"{specs.backbone.name} has blocks 0..{n - 1}, not {tap}")
  return ensemble_config(specs, "layer_probe", FROZEN, small=False, taps=[tap],
                         loss_weights=False)


register_kind(ComponentKind(
    "layer_probe", "one adapting layer on one block of the frozen large model (Figure 4)",
    _probe_config, _ensemble_network, lr_key="levi", default_lr=1e-3, large=FROZEN))


# -- Model Ratatouille: auxiliary fine-tunings, and LP->FT started from them -------

def _aux_name(specs, aux):
  return aux if aux is not None else specs.aux_names()[0]


def _aux_ft_config(specs, seed, aux=None, **_):
  """The pre-trained large model fine-tuned on auxiliary task ``aux`` (a new
  head), once for all target seeds (``ratatouille.aux_seed``), as a recycled
  public fine-tuning would be."""
  aux = _aux_name(specs, aux)
  a, r = specs.aux_task(aux), specs.config.ratatouille
  cfg = {**specs.common("aux_ft"), "large": specs.large_cfg(),
         "lr": float(r.aux_lr) or float(specs.config.lr.ft),
         "aux": {"name": aux, "data": specs.aux_fingerprint(aux), "task": a.task,
                 "out_dim": a.out_dim}}
  del cfg["data"]        # trained on the auxiliary rows, not the target's
  cfg.pop("label_scale", None)
  return cfg


def _aux_data(runner, spec):
  a = runner.specs.aux_task(spec.config["aux"]["name"])
  return a, a.task


register_kind(ComponentKind(
    "aux_ft", "the pre-trained large model fine-tuned on an auxiliary task",
    _aux_ft_config,
    lambda nets, config, rngs: (LargeWithHead(nets.build_large(rngs),
                                              int(config["aux"]["out_dim"]), rngs=rngs),
                                TRAIN_ALL),
    tuned=False, seed=lambda specs, seed: int(specs.config.ratatouille.aux_seed),
    data=_aux_data))


def _lp_ft_aux_deps(specs, seed, aux=None, **_):
  return (("lp", specs.spec("lp", seed)),
          ("aux", specs.spec("aux_ft", seed, aux=_aux_name(specs, aux))))


def _init_lp_ft_aux(runner, spec, model):
  # The large model as the auxiliary fine-tuning left it, the target's LP head
  # (Ramé et al.'s shared linear-probe initialisation).
  runner.load_from(model, spec.dep("aux"), "large/", "auxiliary fine-tuning")
  return _init_lp_head(runner, spec, model)


register_kind(ComponentKind(
    "lp_ft_aux", "LP->FT on the target from an auxiliary fine-tuning (Model Ratatouille)",
    lambda specs, seed, aux=None, **_: {**specs.common("lp_ft_aux"), "large": specs.large_cfg(),
                                        "aux": _aux_name(specs, aux)},
    head_network(lambda nets, large: TRAIN_ALL), lr_key="lp_ft", default_lr=1e-4,
    lr_of="lp_ft", tuned=False, deps=_lp_ft_aux_deps, init=_init_lp_ft_aux))
