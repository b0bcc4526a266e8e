"""Model soups (Wortsman et al. 2022a): average the weights of fine-tunings
of one pre-trained model (the runs of a learning-rate sweep), not their
outputs. Not a row of the LEVI paper: the harness adds them (issue 10).

Ingredients are the sweep's components themselves (``ctx.spec_with_lr``):
with the ``paper`` preset the soup at the first seed reuses exactly the FT
runs the protocol trained to choose FT's learning rate; nothing is trained
twice. ``soup_uniform`` averages every ingredient; ``soup_greedy`` adds them
in order of ID-validation score and keeps each one only if ID validation
does not get worse (Wortsman et al.'s greedy soup). Only ``val`` takes part
in any choice.

Model Ratatouille (Ramé et al. 2023, model recycling): ``aux_ft`` fine-tunes
the pre-trained large model on each auxiliary task the dataset declares;
``lp_ft_aux`` starts an LP->FT on the target task from each of them (the
target's LP head); with the plain LP->FT (``lp_ft``, the same component the
``lp_ft`` row uses) they are averaged, uniformly (``ratatouille``) or greedily
on ID validation (``ratatouille_greedy``).

Weight averaging is only meaningful between networks of one architecture
that start from one pre-trained model: anything else is refused with a
one-line error (``check_averageable``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from flax import nnx

from benchmark import metrics
from benchmark.components import ComponentResult, ComponentSpec
from benchmark.configs import parse_grid
from benchmark.errors import UserError
from benchmark.kinds import KINDS
from benchmark.models.task import LargeWithHead
from methods import rules
from methods.base import Method, MethodOutput, register


def averageable_kinds() -> list[str]:
  """Kinds that are the pre-trained large model plus a linear head, trained
  in whole or in part from the pre-trained weights (``ComponentKind.averageable``):
  their full weights are the pre-trained model overwritten by what they trained."""
  return [k for k in KINDS if KINDS.get(k).averageable]


def soup_kinds(ctx) -> list[str]:
  kinds = [k.strip() for k in str(ctx.config.soup.kinds).split(",") if k.strip()]
  if not kinds:
    raise UserError("config soup.kinds is empty; give component kinds to average, "
                    "e.g. --config.soup.kinds=ft")
  ok = averageable_kinds()
  for k in kinds:
    if k not in ok:
      why = (KINDS.get(k).not_averageable if k in KINDS
             else "is not a registered component kind")
      raise UserError(f"config soup.kinds={ctx.config.soup.kinds!r}: cannot average {k} "
                      f"with fine-tunings: it {why}; weight averaging needs runs of one "
                      f"architecture from one pre-trained start (use {', '.join(ok)})")
  return kinds


def soup_lrs(ctx) -> list[float]:
  """The sweep the ingredients come from: ``soup.lrs``, else the protocol's
  FT grid (the ``paper`` preset), else FT's learning rate times 1/3, 1, 3."""
  text = str(ctx.config.soup.lrs).strip()
  if text:
    try:
      return parse_grid(text, "lr_grid")
    except UserError:
      raise UserError(f"config soup.lrs={text!r}: give comma-separated positive learning "
                      f"rates, e.g. --config.soup.lrs=3e-4,1e-3,3e-3") from None
  from benchmark.sweep import grid
  g = grid(ctx, "ft")
  if g:
    return g
  lr = float(ctx.config.lr.ft)
  return [lr / 3, lr, lr * 3]


def ingredient_specs(ctx, seed: int) -> dict[str, ComponentSpec]:
  return {f"{kind}@{lr:g}": ctx.spec_with_lr(kind, seed, lr)
          for kind in soup_kinds(ctx) for lr in soup_lrs(ctx)}


def check_averageable(specs: Mapping[str, ComponentSpec],
                      weights: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """One architecture, one pre-trained start: the same large-model config
  and pre-trained weights, and the same parameter names and shapes."""
  names = list(specs)
  ref = names[0]

  def start(s: ComponentSpec):
    return (s.config.get("large"), tuple((n, d.key) for n, d in s.deps if n == "pretrain"))

  for n in names[1:]:
    if start(specs[n]) != start(specs[ref]):
      raise UserError(f"cannot average {n} with {ref}: they start from different "
                      f"pre-trained models or large-model configurations; weight "
                      f"averaging needs runs of one architecture from one pre-trained start")
    a, b = weights[ref], weights[n]
    if set(a) != set(b):
      diff = sorted(set(a) ^ set(b))[:3]
      raise UserError(f"cannot average {n} with {ref}: different parameters (e.g. {diff}); "
                      f"weight averaging needs runs of one architecture")
    for k in a:
      if np.shape(a[k]) != np.shape(b[k]):
        raise UserError(f"cannot average {n} with {ref}: parameter {k} has shapes "
                        f"{np.shape(b[k])} and {np.shape(a[k])}")


def full_weights(ctx, res: ComponentResult) -> dict[str, np.ndarray]:
  """Every variable of the component's network (params and ``state:``
  batch statistics): the pre-trained large model, overwritten by what the
  component trained."""
  out = {f"large/{k}": v for k, v in ctx.pretrained_large().items()}
  out.update({k[len("state:"):] if k.startswith("state:") else k: v
              for k, v in res.params.items()})
  return out


def average(weights: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.mean([np.asarray(w[k], np.float64) for w in weights], axis=0
                     ).astype(np.asarray(weights[0][k]).dtype) for k in weights[0]}


class Soup(Method):
  family = "soups"
  one_network = True   # Table 3: one network at inference, the averaged one
  greedy = False

  def specs(self, ctx, seed):
    return ingredient_specs(ctx, seed)

  def config(self, ctx):
    return {"kinds": soup_kinds(ctx), "lrs": soup_lrs(ctx), "greedy": self.greedy}

  def combine(self, ctx, seed, comps):
    specs = {n: c.spec for n, c in comps.items()}
    weights = {n: full_weights(ctx, c) for n, c in comps.items()}
    check_averageable(specs, weights)
    model = LargeWithHead(ctx.build_large(nnx.Rngs(seed)), ctx.info.out_dim,
                          rngs=nnx.Rngs(seed))
    val = np.asarray(ctx.splits.val.label)
    from benchmark.models import params as P

    def val_score(ws):
      P.load_params(model, average(ws), strict=True)
      return metrics.score(ctx.task, ctx.predict(model, only_val=True)["val"], val)

    # Ingredients best first on ID validation (their own training records).
    order = rules.best_first(ctx.task, {n: comps[n].record["scores"]["val"] for n in comps})
    if self.greedy:
      chosen, best = rules.greedy(ctx.task, order, lambda names: val_score(
          [weights[n] for n in names]))
    else:
      chosen = order
      best = val_score([weights[n] for n in chosen])
    P.load_params(model, average([weights[n] for n in chosen]), strict=True)
    return MethodOutput(ctx.predict(model), {
        "ingredients": chosen, "val": best,
        "ingredient_val": {n: comps[n].record["scores"]["val"] for n in order}})


@register
class UniformSoup(Soup):
  name, label = "soup_uniform", "Uniform soup (FT lr sweep)"


@register
class GreedySoup(Soup):
  name, label, greedy = "soup_greedy", "Greedy soup (FT lr sweep)", True


class Ratatouille(Soup):
  """Model recycling: LP->FT on the target from the pre-trained model and from
  each auxiliary fine-tuning, weights averaged."""
  family = "soups"
  needs_aux = True

  def specs(self, ctx, seed):
    out = {"lp_ft": ctx.spec("lp_ft", seed)}
    out.update({f"lp_ft_aux:{a}": ctx.aux_spec("lp_ft_aux", a, seed)
                for a in ctx.aux_names()})
    return out

  def config(self, ctx):
    r = ctx.config.ratatouille
    return {"aux": ctx.aux_names(), "aux_seed": int(r.aux_seed),
            "aux_lr": float(r.aux_lr) or float(ctx.config.lr.ft), "greedy": self.greedy}


@register
class UniformRatatouille(Ratatouille):
  name, label = "ratatouille", "Model Ratatouille (uniform)"


@register
class GreedyRatatouille(Ratatouille):
  name, label, greedy = "ratatouille_greedy", "Model Ratatouille (greedy)", True
