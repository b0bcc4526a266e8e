"""``t5_small`` inside the harness: a tiny T5 saved by ``transformers`` in
Hugging Face format (the real t5-small is loaded the same way, from the path
the user gives) runs MovieLens end to end, frozen and light-tuned."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_t5_checkpoint_runs_movielens(tmp_path):
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import torch
  import transformers
  from benchmark.models.bert import minilm_dir
  torch.manual_seed(0)
  cfg = transformers.T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                              num_decoder_layers=2, num_heads=4)
  ckpt = tmp_path / "t5"
  transformers.T5Model(cfg).save_pretrained(ckpt, safe_serialization=True)
  # Any tokenizer.json whose ids fit the vocabulary will do for the test.
  shutil.copy(os.path.join(minilm_dir(), "tokenizer.json"), ckpt / "tokenizer.json")
  out = subprocess.run(
      [sys.executable, "run_benchmark.py", "--dataset", "movielens_genre", "--backbone",
       "t5_small", f"--config.backbones.t5_small.checkpoint={ckpt}", "--method",
       "lp,levi", "--preset", "smoke", "--seeds", "0", "--workdir", str(tmp_path / "w")],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  frame = pd.read_csv(tmp_path / "w" / "tables" / "movielens_genre.csv")
  assert set(frame["method"]) == {"lp", "levi"}
  assert frame["mean"].between(0.3, 2.5).all()
