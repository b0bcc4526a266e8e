"""The one-command accelerator run, at toy size on CPU: the prepared folder
(MiniLM with its word-embedding table cut to the rows the sentences use)
gives the full model's numbers, and ``tools/accelerator_run.sh --toy`` runs
perf's accel section and Table 1's MovieLens columns into one folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]


def test_cut_vocabulary_gives_the_full_models_outputs(tmp_path):
  import ml_collections
  from benchmark.models import BACKBONES
  from benchmark.models.bert import minilm_dir
  from tools.accel_prepare import reduced_minilm
  bb = BACKBONES.get("minilm_l6")
  cfg = ml_collections.ConfigDict(dict(bb.defaults))
  texts = np.asarray(["The user is a 24-year-old technician. The movie is Toy Story (1995).",
                      "A film about zebras"], dtype=object)
  view = bb.prepare(texts, cfg)
  rows = np.unique(view["ids"])
  info = reduced_minilm(tmp_path / "minilm", rows)
  assert info["vocab_rows"] == len(rows) < info["vocab"]
  outs = []
  for folder in (minilm_dir(), str(tmp_path / "minilm")):
    cfg.checkpoint = folder if folder != minilm_dir() else ""
    model = bb.build(None, cfg, nnx.Rngs(0))
    bb.load(cfg, model)
    outs.append([np.asarray(t) for t in model(view, train=False)])
  for a, b in zip(*outs):
    np.testing.assert_array_equal(a, b)
  assert (tmp_path / "minilm" / "model.safetensors").stat().st_size < 0.7 * Path(
      minilm_dir(), "model.safetensors").stat().st_size


@pytest.mark.slow
def test_toy_run_writes_every_output(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable,
         "ACCEL_DIR": str(tmp_path / "accel")}
  prep = subprocess.run([sys.executable, "-m", "tools.accel_prepare", "--out",
                         str(tmp_path / "accel"), "--preset", "smoke", "--no_wheels"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert prep.returncode == 0, prep.stderr[-2000:]
  assert "of 64 MiB" in prep.stdout
  run = subprocess.run(["bash", "tools/accelerator_run.sh", str(tmp_path / "out"), "--toy"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
  out = tmp_path / "out"
  for name in ("perf_accel.json", "dry_run.txt", "table1.csv", "table1.tex",
               "table1.hparams.json", "table1.log", "env.txt"):
    assert (out / name).is_file(), name
  perf = json.loads((out / "perf_accel.json").read_text())
  assert perf["detail"]["accel"]["minilm_l6"]["examples_per_s"] > 0
  import pandas as pd
  t = pd.read_csv(out / "table1.csv")
  assert set(t["dataset"].dropna()) >= {"movielens_genre"}
  assert t[(t["dataset"] == "movielens_genre") & (t["method"] == "levi")]["mean"].notna().all()


def test_missing_prepared_folder_is_one_line(tmp_path):
  r = subprocess.run(["bash", "tools/accelerator_run.sh", str(tmp_path / "out")], cwd=ROOT,
                     env={**os.environ, "ACCEL_DIR": str(tmp_path / "none")},
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 2
  assert r.stderr.strip().count("\n") == 0 and "tools.accel_prepare" in r.stderr
