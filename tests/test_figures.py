"""Figures: Figure 4 (one adapting layer per block) and the ID-vs-OOD scatter."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

SS = ["--dataset", "synthetic_spurious", "--seeds", "0"]


def _png_has_a_plot(path):
  """Decodes as a PNG of a plot's size, and is not one flat colour."""
  import matplotlib.image
  img = matplotlib.image.imread(path)
  assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, img.shape
  assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 20


@pytest.mark.slow
def test_figure4_and_scatter(run_cli, tmp_path):
  r = run_cli(["--figure", "4", *SS], tmp_path)
  assert r.returncode == 0, r.stderr
  png = tmp_path / "figures" / "figure4.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  _png_has_a_plot(png)
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
  _png_has_a_plot(png)
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


def _captured(monkeypatch):
  from benchmark import figures
  figs = []
  monkeypatch.setattr(figures, "_save", lambda fig, path: figs.append(fig) or path)
  return figures, figs


def test_scatter_plots_each_methods_mean_and_std_over_seeds(monkeypatch, tmp_path):
  figures, figs = _captured(monkeypatch)
  rec = lambda m, s, i, a, b: {"method": m, "seed": s, "status": "ok", "metric": "rmse",
                               "scores": {"val": 0.0, "test_id": i, "ood/a": a, "ood/b": b}}
  recs = [rec("ft", 0, 1.0, 2.0, 3.0), rec("ft", 1, 1.2, 2.4, 3.0), rec("levi", 0, 0.8, 1.0, 2.0),
          {"method": "lp", "seed": 0, "status": "failed", "metric": "rmse"}]
  figures.scatter(recs, {"ft": "FT", "levi": "LEVI"}, tmp_path / "s.png", "toy")
  (ax,) = figs[0].axes
  pts = {}
  for c in ax.containers:   # one errorbar per method: (point, caps, bars)
    line = c.lines[0]
    pts[len(pts)] = (float(line.get_xdata()[0]), float(line.get_ydata()[0]),
                     c.has_xerr, c.has_yerr)
  assert [t.get_text() for t in ax.texts] == ["FT", "LEVI"]   # the failed run is left out
  assert pts[0][:2] == pytest.approx((1.1, np.mean([2.5, 2.7])))   # mean over seeds
  assert pts[1][:2] == pytest.approx((0.8, 1.5))
  # The error bars are the sample std over seeds: FT's ID bar spans 1.1 +- 0.1414.
  ft_bars = ax.containers[0].lines[2][0].get_segments()[0]
  assert sorted(p[0] for p in ft_bars) == pytest.approx([1.1 - np.std([1.0, 1.2], ddof=1),
                                                         1.1 + np.std([1.0, 1.2], ddof=1)])
  assert ax.get_xlabel() == "ID RMSE, test_id"
  assert ax.get_ylabel() == "OOD RMSE, unweighted mean over 2 groups: a, b"
  assert "seeds 0,1; lower is better" in ax.get_title()


def test_figure4_plots_the_mean_per_block_and_writes_its_numbers(monkeypatch, tmp_path):
  figures, figs = _captured(monkeypatch)
  frame = pd.DataFrame([{"dataset": "toy", "block": b, "seed": s, "metric": "rmse",
                         "id": 1.0 + b / 10 + s / 100, "ood": 2.0 - b / 10 + s / 50}
                        for b in (1, 2, 3) for s in (0, 1)])
  _, csv = figures.figure4(frame, tmp_path)
  (ax,) = figs[0].axes
  id_line, ood_line = (c.lines[0] for c in ax.containers)
  np.testing.assert_allclose(np.asarray(id_line.get_xdata(), float), [1, 2, 3])
  np.testing.assert_allclose(np.asarray(id_line.get_ydata(), float), [1.105, 1.205, 1.305])
  np.testing.assert_allclose(np.asarray(ood_line.get_ydata(), float), [1.91, 1.81, 1.71])
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ID", "OOD"]
  stats = pd.read_csv(csv)
  np.testing.assert_allclose(stats["id_mean"], [1.105, 1.205, 1.305])
  np.testing.assert_allclose(stats["ood_std"], np.std([0, 0.02], ddof=1), rtol=1e-5)
