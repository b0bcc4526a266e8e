"""Figures: Figure 4 (one adapting layer per block) and the ID-vs-OOD scatter."""
from __future__ import annotations

import pandas as pd

SS = ["--dataset", "synthetic_spurious", "--seeds", "0"]


def test_figure4_and_scatter(run_cli, tmp_path):
  r = run_cli(["--figure", "4", *SS], tmp_path)
  assert r.returncode == 0, r.stderr
  png = tmp_path / "figures" / "figure4.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  stats = pd.read_csv(tmp_path / "figures" / "figure4.csv")
  assert list(stats["block"]) == [1, 2, 3]  # the tabular MLP's three blocks
  assert stats["id_mean"].notna().all() and stats["ood_mean"].notna().all()

  r = run_cli(["--figure", "scatter", *SS], tmp_path)
  assert r.returncode == 2 and "no runs of synthetic_spurious" in r.stderr
  assert run_cli(["--method", "ft,lp,levi", *SS], tmp_path).returncode == 0
  r = run_cli(["--figure", "scatter", *SS], tmp_path)
  assert r.returncode == 0, r.stderr
  assert "3 methods" in r.stdout
  (png,) = (tmp_path / "figures").glob("scatter_synthetic_spurious_smoke_*.png")
  assert png.read_bytes()[:4] == b"\x89PNG" and str(png) in r.stdout
  # Another configuration writes another file; this one stays.
  assert run_cli(["--method", "ft", *SS, "--config.epochs=2"], tmp_path).returncode == 0
  r = run_cli(["--figure", "scatter", *SS, "--config.epochs=2"], tmp_path)
  assert r.returncode == 0, r.stderr
  assert "(1 method, 1 run)" in r.stdout
  assert len(list((tmp_path / "figures").glob("scatter_synthetic_spurious_smoke_*.png"))) == 2


def test_scatter_axis_names_the_metric_and_groups():
  from benchmark.figures import ood_label
  assert ood_label(["val", "test_id", "ood/x_only"], "acc") == "OOD accuracy (%), group x_only"
  genres = [f"ood/g{i}" for i in range(12)]
  assert ood_label(genres, "rmse") == "OOD RMSE, unweighted mean over 12 groups"
  assert ood_label(["ood/a", "ood/b", "ood/tiny"], "acc", exclude=("tiny",)) == \
      "OOD accuracy (%), unweighted mean over 2 groups: a, b"
  # A family beside a single-level group: the single-level one (as in the paper).
  assert ood_label(["ood/time", "ood/product/Watches", "ood/product/Toys"], "rmse") == \
      "OOD RMSE, group time"
