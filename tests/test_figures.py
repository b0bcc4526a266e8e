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
  assert (tmp_path / "figures" / "scatter_synthetic_spurious.png").read_bytes()[:4] == b"\x89PNG"
