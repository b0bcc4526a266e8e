"""The HTML report (parsed back with ``html.parser``), learning curves and
the scatter's given error bars."""
from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from benchmark import figures, html_report

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class Page(HTMLParser):
  """Tags, table cells, image sources, links and text of a document; fails
  on a closing tag that does not match the open one."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.stack, self.tags, self.imgs, self.hrefs = [], [], [], []
    self.tables: list[list[list[str]]] = []
    self.text: list[str] = []
    self._cell: list[str] | None = None

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    self.tags.append(tag)
    if tag not in VOID:
      self.stack.append(tag)
    if tag == "img":
      self.imgs.append(a)
    if tag == "a":
      self.hrefs.append(a.get("href"))
    if tag == "table":
      self.tables.append([])
    if tag == "tr":
      self.tables[-1].append([])
    if tag in ("td", "th"):
      self._cell = []

  def handle_endtag(self, tag):
    if tag in VOID:
      return
    assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
    self.stack.pop()
    if tag in ("td", "th"):
      self.tables[-1][-1].append("".join(self._cell).strip())
      self._cell = None

  def handle_data(self, data):
    self.text.append(data)
    if self._cell is not None:
      self._cell.append(data)


def _parse(doc: str) -> Page:
  page = Page()
  page.feed(doc)
  page.close()
  assert page.stack == [], page.stack
  return page


def _component(kind, seed, epochs=4, eval_every=1, metric="rmse"):
  rng = np.random.default_rng(seed)
  loss = list(np.linspace(1.0, 0.3, epochs) + rng.uniform(0, 0.05, epochs))
  val_epochs = [e for e in range(epochs) if (e + 1) % eval_every == 0 or e + 1 == epochs]
  val = list(0.9 - 0.05 * np.arange(len(val_epochs)) + rng.uniform(0, 0.01, len(val_epochs)))
  return {"kind": kind, "key": f"{kind}{seed:02d}abcdef0123", "seed": seed, "status": "ok",
          "metric": metric, "config": {"lr": 1e-3}, "loss_curve": loss, "val_curve": val,
          "val_epochs": val_epochs, "best_epoch": val_epochs[-1]}


def _method(method, seed, id_, ood):
  return {"method": method, "seed": seed, "status": "ok", "metric": "acc",
          "scores": {"val": id_, "test_id": id_, "ood/a": ood - 1, "ood/b": ood + 1}}


METHODS = [_method(m, s, 90 + i + s, 60 + 3 * i - s)
           for i, m in enumerate(["ft", "lp", "levi"]) for s in (0, 1)]


def _decoded_pngs(page: Page) -> list[bytes]:
  out = []
  for img in page.imgs:
    src = img["src"]
    assert src.startswith("data:image/png;base64,"), src[:40]
    out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
  return out


def test_report_holds_tables_images_and_provenance(tmp_path):
  from PIL import Image
  main = pd.DataFrame({"test_id": ["0.912 [0.901, 0.923]", "0.930 [0.921, 0.939]†"],
                       "ood": ["0.611 [0.58, 0.64]", "<b>0.7</b> & more"]},
                      index=["FT", "LEVI"])
  groups = pd.DataFrame({"ood/a": [0.5, 0.6], "ood/b": [0.4, 0.45]}, index=["FT", "LEVI"])
  styled = groups.style.format("{:.3f}").highlight_max(axis=0, props="font-weight:bold")
  scatter_png = figures.png_bytes(figures.scatter_figure(METHODS, {"ft": "FT"}, "demo"))
  curves = [_component("ft", 0), _component("ft", 1), _component("lp", 0, eval_every=2),
            {"kind": "ft", "key": "failed0", "status": "failed", "reason": "diverged"}]
  provenance = {"argv": ["run_benchmark.py", "--method", "ft,lp"], "git": "abc123 (dirty)",
                "versions": {"jax": "0.10.2"}, "started": "2026-12-02T00:30:00"}
  path = html_report.write(
      tmp_path / "r" / "report.html", title="demo <report>",
      tables=[("Main table", main), ("Per-group OOD", styled)],
      figures=[("ID vs OOD", scatter_png)], curves=curves, provenance=provenance,
      notes=["† significant"])
  doc = path.read_text(encoding="utf-8")
  page = _parse(doc)

  # Self-contained: no script, stylesheet link or remote source; links are anchors.
  assert not {"script", "link", "iframe", "object"} & set(page.tags)
  assert "http://" not in doc and "https://" not in doc
  assert page.hrefs and all(h.startswith("#") for h in page.hrefs)
  assert {h[1:] for h in page.hrefs} <= set(_ids(doc))
  pngs = _decoded_pngs(page)
  assert len(pngs) == 2   # the scatter and the learning curves
  assert pngs[0] == scatter_png
  for png in pngs:
    assert Image.open(io.BytesIO(png)).size[0] > 100

  # Tables: the two given, the components listed, the provenance.
  cells = [c for t in page.tables for row in t for c in row]
  assert "0.912 [0.901, 0.923]" in cells and "0.930 [0.921, 0.939]†" in cells
  assert "<b>0.7</b> & more" in cells and "b" not in page.tags  # shown as text
  assert "0.600" in cells and "0.450" in cells                 # the Styler's format
  assert "font-weight:bold" in doc.replace(" ", "")
  listing = next(t for t in page.tables if t and "kind" in t[0])
  assert [row[0] for row in listing[1:]] == ["ft", "ft", "lp"]  # the failed one left out
  prov = {row[0]: row[1] for row in page.tables[-1]}
  assert prov["git"] == "abc123 (dirty)" and '"jax": "0.10.2"' in prov["versions"]
  text = " ".join(page.text)
  assert "demo <report>" in text and "† significant" in text
  # The same inputs, the same bytes (no random table ids).
  again = html_report.render(
      title="demo <report>", tables=[("Main table", main), ("Per-group OOD", styled)],
      figures=[("ID vs OOD", scatter_png)], curves=curves, provenance=provenance,
      notes=["† significant"])
  assert again == doc


def _ids(doc: str) -> list[str]:
  class Ids(HTMLParser):
    found: list[str] = []

    def handle_starttag(self, tag, attrs):
      self.found += [v for k, v in attrs if k == "id"]
  p = Ids()
  p.found = []
  p.feed(doc)
  return p.found


def test_report_refuses_what_is_not_a_png():
  with pytest.raises(ValueError, match="PNG"):
    html_report.render(title="t", figures=[("x", b"GIF89a....")])


def test_report_without_curves_has_no_curve_section():
  doc = html_report.render(title="t", tables=[("T", pd.DataFrame({"a": [1]}))], curves=[])
  page = _parse(doc)
  assert page.imgs == [] and "Learning curves" not in doc


def test_learning_curves_draw_each_component_per_kind():
  recs = [_component("ft", 0), _component("ft", 1, epochs=5, eval_every=2),
          _component("lp", 0, metric="acc")]
  fig = figures.learning_curves_figure(recs)
  axes = fig.axes
  assert len(axes) == 4   # (loss, val) for ft and for lp
  loss_ft, val_ft = axes[0], axes[1]
  lines = [ln for ln in loss_ft.get_lines()]
  assert len(lines) == 2
  np.testing.assert_allclose(lines[1].get_xdata(), np.arange(1, 6))
  np.testing.assert_allclose(lines[1].get_ydata(), recs[1]["loss_curve"])
  # Validation at the epochs it happened (every 2nd and the last), not spread evenly.
  val_lines = [ln for ln in val_ft.get_lines() if ln.get_linestyle() != "None"]
  np.testing.assert_allclose(val_lines[1].get_xdata(), [2, 4, 5])
  np.testing.assert_allclose(val_lines[1].get_ydata(), recs[1]["val_curve"])
  assert "accuracy" in axes[3].get_title() and "RMSE" in axes[1].get_title()
  assert figures.learning_curves(recs)[:8] == html_report.PNG_MAGIC
  with pytest.raises(ValueError):
    figures.learning_curves([{"kind": "ft", "status": "failed"}])


def test_curve_epochs_of_records_without_val_epochs():
  assert figures.curve_epochs({"loss_curve": [1, 1, 1], "val_curve": [1, 1, 1]}) == \
      ([1, 2, 3], [1, 2, 3])
  assert figures.curve_epochs({"loss_curve": [1] * 6, "val_curve": [1, 1]})[1] == [3, 6]


def _bars(fig) -> dict[str, tuple[float, float, float, float]]:
  """Per annotated point: (x low, x high, y low, y high) of its error bars."""
  ax = fig.axes[0]
  names = [t.get_text() for t in ax.texts]
  out = {}
  bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
  for name, c in zip(names, bars):
    if not (c.has_xerr and c.has_yerr):
      out[name] = None
      continue
    xbar, ybar = c.lines[2]   # (data line, caps, (x bars, y bars))
    xs, ys = xbar.get_segments()[0][:, 0], ybar.get_segments()[0][:, 1]
    out[name] = (float(min(xs)), float(max(xs)), float(min(ys)), float(max(ys)))
  return out


def test_scatter_draws_given_intervals():
  errors = pd.DataFrame([
      {"method": "ft", "split": "test_id", "ci_low": 89.0, "ci_high": 92.0},
      {"method": "ft", "split": "ood", "ci_low": 58.0, "ci_high": 61.0},
      {"method": "lp", "split": "test_id", "ci_low": 90.0, "ci_high": 93.0},
      {"method": "lp", "split": "ood", "ci_low": 60.0, "ci_high": 65.0},
      {"method": "lp", "split": "ood/a", "ci_low": 0.0, "ci_high": 100.0}])
  with_ci = _bars(figures.scatter_figure(METHODS, {}, "t", errors=errors,
                                         errors_label="95% bootstrap CI"))
  assert with_ci["ft"] == (89.0, 92.0, 58.0, 61.0)
  assert with_ci["lp"] == (90.0, 93.0, 60.0, 65.0)
  assert with_ci["levi"] is None   # no interval given: no bar
  # Without ``errors``: the std over seeds, as before.
  std = _bars(figures.scatter_figure(METHODS, {}, "t"))
  sd = float(np.std([90, 91], ddof=1))
  np.testing.assert_allclose(std["ft"][:2], (90.5 - sd, 90.5 + sd))


def test_headline_split_names_the_scatter_ood_column():
  assert figures.headline_split(["test_id", "ood/a", "ood/b"]) == "ood"
  assert figures.headline_split(["test_id", "ood/time", "ood/p/x", "ood/p/y"]) == "ood/time"
  assert figures.headline_split(["test_id", "ood/t", "ood/u", "ood/p/x"]) is None
