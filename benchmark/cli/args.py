"""Parses the command line's values (seeds, shard, methods, table, figure,
data_dir, ``--config.*`` overrides) into what the runs take, each malformed
value a one-line UserError naming the fix."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from benchmark import configs, setup
from benchmark.errors import UserError
from datasets import DATASETS
from methods import METHODS

# The example of a per-dataset path in --data_dir's error (one named here, so
# that the parsing names none).
DATA_DIR_EXAMPLE = "amazon_reviews=/data/amazon"
FIGURES = ("4", "scatter")


@dataclasses.dataclass(frozen=True)
class Options:
  """The flag values of one invocation (``run_benchmark.py``'s flags), and
  the ``--config.KEY`` names given on its command line."""
  config: Any                       # the ConfigDict with the overrides applied
  override_keys: tuple[str, ...] = ()
  list: bool = False
  list_config: bool = False
  method: str | None = None
  dataset: str | None = None
  backbone: str | None = None
  seeds: str = "0,1,2"
  shard: str = "0/1"
  table: str = ""
  figure: str = ""
  dry_run: bool = False
  preset: str = "cpu"
  workdir: str = "results"
  data_dir: str | None = None
  extra_rows: bool = True
  reference: str = "ft"
  report: bool = False
  distributed_timeout_s: str = "30"
  launcher: Any = None              # launch.LauncherOptions, or None: run here
  argv: tuple[str, ...] = ()        # the command line's flags (what launched jobs rerun)

  @classmethod
  def from_flags(cls, flag_values, argv: list[str]) -> "Options":
    from benchmark.cli import launch
    names = [f.name for f in dataclasses.fields(cls)
             if f.name not in ("override_keys", "launcher", "argv")]
    return cls(override_keys=tuple(override_keys(argv)), launcher=launch.parse(flag_values),
               argv=tuple(argv[1:]), **{n: getattr(flag_values, n) for n in names})


def check_config_overrides(argv: list[str], base) -> None:
  """Every ``--config.KEY=VALUE`` names a key of ``base`` and parses as its
  type; else a UserError naming the fix. Runs before absl parses the flags,
  where ml_collections would print a traceback (unknown key) or a two-line
  fatal error (bad value)."""
  import ast
  import difflib

  import ml_collections
  args = list(argv)
  for i, arg in enumerate(args):
    if not arg.startswith("--config."):
      continue
    key, sep, value = arg[len("--config."):].partition("=")
    if not sep:
      value = args[i + 1] if i + 1 < len(args) else ""
    node, path = base, []
    for part in key.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        here = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, here, n=1, cutoff=0.5)
        hint = f" (did you mean {'.'.join(path + close)}?)" if close else ""
        raise UserError(f"unknown config key {key!r}{hint}; --list_config --dataset NAME "
                        f"prints every key")
      node, path = node[part], path + [part]
    if isinstance(node, ml_collections.ConfigDict):
      raise UserError(f"config key {key!r} is a group; set one of its keys, e.g. "
                      f"--config.{key}.{next(iter(node.keys()), 'KEY')}=...")
    kind = type(node)
    try:
      if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError(value)
      elif kind is int:
        int(value)
      elif kind is float:
        float(value)
      elif kind in (tuple, list):
        parsed = ast.literal_eval(value)
        if not isinstance(parsed, (tuple, list, int, float)):
          raise ValueError(value)
    except (ValueError, SyntaxError):
      example = {bool: "true", int: "5", float: "0.001", tuple: "(512,256)",
                 list: "[1,2]"}.get(kind, "...")
      article = "an" if kind.__name__[0] in "aeiou" else "a"
      raise UserError(f"config {key} takes {article} {kind.__name__}, not {value!r}; e.g. "
                      f"--config.{key}={example}") from None


# Flags absl itself reads (besides those in FLAGS when the check runs).
ABSL_FLAGS = ("flagfile", "undefok", "helpfull", "helpxml", "only_check_args")


def check_flag_names(argv: list[str], flag_values, ours: list[str]) -> None:
  """Every ``--name`` (or ``--noname`` of a boolean) on the command line is a
  defined flag; else a UserError with the closest of ``ours`` (the harness's
  flags). The value after a flag that takes one is skipped (``--seeds -1``)."""
  import difflib
  known = set(flag_values) | set(ABSL_FLAGS) | {"config"}
  skip = False
  for arg in argv:
    if skip:
      skip = False
      continue
    if arg == "--":
      break
    if not arg.startswith("-") or arg == "-" or arg.startswith("--config."):
      if arg.startswith("--config.") and "=" not in arg:
        skip = True
      continue
    name, eq, _ = arg.lstrip("-").partition("=")
    if name in known:
      skip = not eq and name in flag_values and not flag_values[name].boolean
      continue
    if name.startswith("no") and name[2:] in flag_values and flag_values[name[2:]].boolean:
      continue
    close = difflib.get_close_matches(name, ours, n=1, cutoff=0.6) or \
        difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    raise UserError(f"unknown flag {arg.split('=')[0]}{hint}; python run_benchmark.py "
                    f"--help lists the flags")


def override_keys(argv: list[str]) -> list[str]:
  """The ``--config.KEY`` names given on the command line, in order."""
  keys = []
  for a in argv:
    if a.startswith("--config."):
      keys.append(a[len("--config."):].split("=", 1)[0])
  return keys


def config_for(opts: Options, dataset: str):
  """``dataset``'s config: ``opts.preset`` over the flags' config, then the
  command line's overrides again (they win over the preset)."""
  overrides = {k: configs.get_dotted(opts.config, k) for k in opts.override_keys}
  return setup.resolve_config(dataset, opts.preset, overrides, base=opts.config)


def parse_shard(text: str) -> tuple[int, int]:
  m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
  if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
    raise UserError(f"malformed --shard {text!r}: give i/N with 0 <= i < N, e.g. "
                    f"--shard 0/2 and --shard 1/2 for two processes")
  return int(m.group(1)), int(m.group(2))


def parse_timeout(text: str) -> float:
  try:
    value = float(text)
  except (TypeError, ValueError):
    value = -1.0
  if not value > 0 or value != value or value == float("inf"):
    raise UserError(f"malformed --distributed_timeout_s {text!r}: give seconds > 0, e.g. "
                    f"--distributed_timeout_s 30")
  return value


def data_dir_for(text: str | None, dataset: str) -> str | None:
  """``--data_dir``: one path for every dataset, or ``NAME=PATH[,NAME=PATH]``."""
  if not text or not re.match(r"^[A-Za-z0-9_]+=", text):
    return text
  dirs = {}
  for part in text.split(","):
    name, sep, path = part.partition("=")
    name = name.strip()
    if not sep or not path.strip():
      raise UserError(f"malformed --data_dir {text!r}: give PATH, or NAME=PATH[,NAME=PATH] "
                      f"with NAME a dataset (e.g. {DATA_DIR_EXAMPLE})")
    DATASETS.get(name)  # an unknown name: one line with the valid names
    dirs[name] = path.strip()
  return dirs.get(dataset)


def parse_seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip() != ""]
  except ValueError:
    seeds = []
  if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    raise UserError(f"malformed --seeds {text!r}: give distinct comma-separated "
                    f"non-negative integers, e.g. --seeds 0,1,2")
  return seeds


def parse_methods(text: str | None) -> list:
  if not text:
    raise UserError("no --method given: pass e.g. --method ft,levi or --method all "
                    "(--list prints the names)")
  if text.strip() == "all":
    return [METHODS.get(n) for n in METHODS]
  names = [m.strip() for m in text.split(",") if m.strip()]
  return [METHODS.get(n) for n in dict.fromkeys(names)]


def parse_table(text: str, method: str | None) -> int:
  """``--table``'s number; ``--method`` with it is an error."""
  from benchmark import paper_tables as PT
  try:
    n = int(text)
  except ValueError:
    n = -1
  if n not in PT.NUMBERS:
    raise UserError(f"malformed --table {text!r}: give one of the paper's tables "
                    f"{', '.join(map(str, PT.NUMBERS))}, e.g. --table 1")
  if method:
    raise UserError("give either --table N (the paper's rows) or --method (your rows), "
                    "not both")
  return n


def parse_figure(text: str) -> str:
  what = text.strip().lower()
  if what not in FIGURES:
    raise UserError(f"malformed --figure {text!r}: give 4 (the paper's Figure 4) "
                    f"or scatter (ID vs OOD per method on --dataset)")
  return what
