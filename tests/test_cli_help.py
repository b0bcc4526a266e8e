"""What a new user reads first: ``--help`` (short, exit 0, the tables from
the code), ``--list_config --dataset X`` (only the keys that apply, each with
a meaning), and README agreeing with the code (tables, method names)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark import paper_tables
from benchmark.cli import config_help
from benchmark.models import BACKBONES
from datasets import DATASETS
from methods import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_help_is_short_and_exits_0(run_cli, tmp_path):
  r = run_cli(["--help"], tmp_path)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert len(lines) < 60, len(lines)
  assert "!!python" not in r.stdout and "Traceback" not in r.stderr
  assert paper_tables.numbers_text() in r.stdout
  for flag in ("--method", "--dataset", "--preset", "--list_config", "--table", "--dry_run"):
    assert flag in r.stdout
  assert not (tmp_path / "runs").exists()


def test_numbers_text_from_the_table_registry():
  assert paper_tables.numbers_text([1, 2, 3, 4, 5, 9, 10, 11, 12, 14, 17]) == \
      "1–5, 9–12, 14, 17"
  assert paper_tables.numbers_text([1, 3, 4, 9]) == "1, 3, 4, 9"
  assert f"`--table N` ({paper_tables.numbers_text()})" in README.read_text()


def test_list_config_shows_the_dataset_and_its_backbone_only(run_cli, tmp_path):
  r = run_cli(["--list_config", "--dataset", "movielens_genre", "--preset", "cpu",
               "--config.epochs=3"], tmp_path)
  assert r.returncode == 0, r.stderr
  out = r.stdout
  assert "data.movielens_genre.max_train" in out and "backbones.minilm_l6.max_len" in out
  keys = [l.split()[0] for l in out.splitlines()[2:]]
  for other in ("data.amazon_reviews.", "data.tabular.", "backbones.t5_small.",
                "backbones.tabular_mlp.", "pretrain.", "model.cnn_features", "lr.pretrain"):
    assert not [k for k in keys if k.startswith(other)], other
  assert "!!python" not in out and "{" not in out
  row = {l.split()[0]: l for l in out.splitlines()[2:]}
  assert re.match(r"\s+epochs\s+3\s+\+ training epochs", row["epochs"])           # command line
  assert re.match(r"\s+batch_size\s+50\s+\* training batch", row["batch_size"])   # the preset
  assert "0 = all" in row["data.movielens_genre.max_eval"]


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_key_that_applies_has_a_meaning(dataset):
  from benchmark import setup
  config = setup.resolve_config(dataset, "smoke")
  bb = BACKBONES.get(setup.backbone_for(dataset))
  text = config_help.config_text(config, setup.base_config(), dataset, bb)
  blank = [l for l in text.splitlines()[2:] if not config_help.meaning(l.split()[0])]
  assert blank == [], blank


def test_readme_method_names_are_the_registry_labels():
  rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README.read_text(), re.M)
  shown = {name: label.strip() for name, label in rows if name in METHODS}
  assert len(shown) >= len(METHODS.names()) - 5  # a1 ... a5 share one row
  for name, label in shown.items():
    assert label == METHODS.get(name).label, (name, label)
