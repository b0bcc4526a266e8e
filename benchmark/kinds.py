"""Component kinds as data: one ``ComponentKind`` per kind of trained network.

A kind says, in one place, everything the core needs about it: its spec
config and dependencies (``config``, ``deps``), its network and freezing rules
(``network``), what is loaded into it before training (``init``), its
learning-rate key and grid, whether the protocol tunes it, whether soups may
average it, which large-model mode it uses, and an optional extra loss term.
The core (``benchmark.specs``, ``benchmark.networks``, ``benchmark.runner``)
reads kinds through ``KINDS`` and never names one; the built-in kinds are
declared in ``benchmark.builtin_kinds``, and a method module may register its
own with ``register_kind`` (``docs/extending.md``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from benchmark.registry import Registry

# Large-model modes: frozen (its taps computed once and cached), top half of
# the blocks trained (HT, light-tuning), all of it, or LoRA factors on the
# attention projections (Sec. 5.3); None: no large model.
FROZEN, LIGHT, FULL, LORA = "frozen", "light", "full", "lora"
MODES = (FROZEN, LIGHT, FULL, LORA, None)


@dataclasses.dataclass(frozen=True)
class ComponentKind:
  """Everything the core needs to know about one kind of component.

  - ``config(specs, seed, **options) -> dict``: the spec config (the store key
    hashes it); ``specs`` is the ``SpecBuilder``, whose ``common(kind)`` gives
    the shared training settings and the learning rate.
  - ``deps(specs, seed, **options) -> ((name, ComponentSpec), ...)``: other
    components it starts from (the pre-training, when the backbone is
    pre-trained here, is added for every kind with ``pretrained``).
  - ``network(nets, config, rngs) -> (module, rules)``: the network with random
    weights and its freezing rules (regex, trains); ``nets`` is ``Networks``.
  - ``init(runner, spec, model) -> dict``: loads what it starts from beyond
    the pre-trained large model (e.g. LP's head) and returns extra
    ``TrainJob`` fields.
  - ``data(ctx, spec) -> (splits, task)``: what it trains on, when not the
    benchmark's own splits (an auxiliary task).
  - ``loss_term(config) -> fn(params, start) -> scalar``: added to the loss;
    ``params`` and ``start`` are the trainable parameters by flat name, now
    and at the start of training (e.g. L2 towards the pre-trained weights).
    The function must be hashable (one compiled step per distinct term).
  """
  name: str
  description: str
  config: Callable[..., dict]
  network: Callable[..., tuple]
  lr_key: str | None = None            # config.lr key; None: ``config`` sets "lr"
  default_lr: float | None = None      # the default of config.lr.<lr_key>
  lr_of: str | None = None             # the kind whose chosen lr it trains at (default: itself)
  grid: str = "lr_grid"                # config.protocol grid that tunes it
  tuned: bool = True                   # the protocol chooses its lr on ID validation
  averageable: bool = False            # soups may average its weights
  not_averageable: str = "is not the pre-trained large model with a linear head"
  large: str | None = FULL             # large-model mode (MODES)
  small: bool = False                  # has the small model
  pretrained: bool = True              # starts from the pre-trained large model
  deps: Callable[..., tuple] | None = None
  init: Callable[..., dict] | None = None
  data: Callable[..., tuple] | None = None
  loss_term: Callable[[Mapping[str, Any]], Callable] | None = None
  # The seed it trains with, when not the method's (e.g. one pre-training
  # shared by every seed): ``seed(specs, seed) -> int``.
  seed: Callable[..., int] | None = None
  # Whether ``protocol.max_train_large`` caps its ID training rows; None: when
  # it trains the large model (light, full, LoRA). False for a kind that
  # trains on other rows (e.g. the pre-training on the pretrain split).
  capped: bool | None = None
  # Extra config groups this kind reads, e.g. {"l2sp": {"alphas": "..."}}.
  config_defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.large not in MODES:
      raise ValueError(f"kind {self.name}: large={self.large!r}, use one of {MODES}")
    if self.lr_key is not None and self.default_lr is None:
      raise ValueError(f"kind {self.name}: lr_key {self.lr_key!r} needs a default_lr")

  @property
  def trains_large(self) -> bool:
    return self.large is not None and self.large != FROZEN

  @property
  def is_capped(self) -> bool:
    """Whether ``protocol.max_train_large`` applies to it."""
    return self.trains_large if self.capped is None else bool(self.capped)

  @property
  def lr_kind(self) -> str:
    """The kind whose learning-rate choice this kind trains at."""
    return self.lr_of or self.name


KINDS: Registry[ComponentKind] = Registry("component kind")


def register_kind(kind: ComponentKind) -> ComponentKind:
  KINDS.add(kind.name, kind)
  return kind


def _builtin() -> None:
  import benchmark.builtin_kinds  # noqa: F401  (registers the built-in kinds)


def lr_defaults() -> dict[str, float]:
  """``config.lr``: every registered kind's learning-rate key and default."""
  _builtin()
  out: dict[str, float] = {}
  for name in KINDS:
    k = KINDS.get(name)
    if k.lr_key is not None:
      out.setdefault(k.lr_key, float(k.default_lr))
  return out


def config_defaults() -> dict[str, dict[str, Any]]:
  """Config groups that registered kinds add (``ComponentKind.config_defaults``)."""
  _builtin()
  out: dict[str, dict[str, Any]] = {}
  for name in KINDS:
    for group, values in KINDS.get(name).config_defaults.items():
      out.setdefault(group, {}).update(values)
  return out
