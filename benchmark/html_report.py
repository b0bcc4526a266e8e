"""A self-contained HTML report: tables, figures, learning curves, provenance.

One file that any browser reads from disk: inline CSS, no script, every
image embedded as a ``data:image/png;base64`` URI. Pure functions of what
they are given; the caller (the CLI) gathers it::

  html = render(
      title="synthetic_spurious, smoke preset",
      tables=[("Main table: mean [95% CI]", styler_or_frame), ...],
      figures=[("ID vs OOD", png_bytes), ...],
      curves=[component_record, ...],
      provenance=run_json,
      notes=["† differs from FT at p < 0.05 (paired bootstrap)"])
  write(folder / "report.html", **same_arguments)

- ``tables``: (caption, table) pairs in order. A ``pandas.DataFrame`` is
  rendered with ``df.style.format(escape="html", na_rep="").to_html()``
  (cells shown as text, NaN blank); a ``Styler`` as it is, with its own styles and formats (escape its
  cells, ``.format(escape="html")``, if they may hold ``<`` or ``&``).
- ``figures``: (caption, PNG bytes) pairs, e.g. a file ``figures.scatter``
  wrote; anything else than a PNG is refused (ValueError).
- ``curves``: component records (``runs/components/<kind>/<key>.json``, as
  read); those with a ``loss_curve`` are drawn by ``figures.learning_curves``
  and listed in a table (kind, key, seed, lr, epochs, selected epoch, its
  validation score). None with a curve: no section.
- ``provenance``: a mapping shown as a table of its top-level keys, nested
  values as indented JSON (e.g. the invocation's ``run.json``).
- ``notes``: paragraphs of plain text under the title (legends of marks).

Every text is HTML-escaped; sections are linked from a contents line.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from benchmark.store import atomic_write_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 1.5em auto; max-width: 1150px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
nav { font-size: .9em; color: #555; }
nav a { margin-right: 1em; }
p.note { font-size: .9em; color: #444; margin: .3em 0; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right;
         vertical-align: top; }
th { background: #f3f3f3; }
th.row_heading, td.key { text-align: left; }
table.provenance td { text-align: left; }
pre { margin: 0; font-size: .95em; white-space: pre-wrap; }
figure { margin: .8em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
details { margin: .5em 0; }
.wide { overflow-x: auto; }
"""


def render(*, title: str, tables: Sequence[tuple[str, Styler | pd.DataFrame]] = (),
           figures: Sequence[tuple[str, bytes]] = (), curves: Sequence[Mapping] = (),
           provenance: Mapping | None = None, notes: Sequence[str] = ()) -> str:
  """The report as one HTML document (see the module docstring)."""
  sections: list[tuple[str, str, str]] = []   # (anchor, heading, body)
  for i, (caption, table) in enumerate(tables):
    html_table = _table_html(table, f"table{i + 1}")
    sections.append((f"table-{i + 1}", caption, f'<div class="wide">{html_table}</div>'))
  for i, (caption, png) in enumerate(figures):
    sections.append((f"figure-{i + 1}", caption, _figure_html(caption, png, shown=False)))
  with_curves = [r for r in curves if r.get("loss_curve")]
  if with_curves:
    sections.append(("learning-curves", "Learning curves", _curves_html(with_curves)))
  if provenance is not None:
    sections.append(("provenance", "Provenance", _provenance_html(provenance)))
  e = html.escape
  nav = " ".join(f'<a href="#{a}">{e(h)}</a>' for a, h, _ in sections)
  body = "\n".join(f'<section id="{a}">\n<h2>{e(h)}</h2>\n{b}\n</section>'
                   for a, h, b in sections)
  notes_html = "\n".join(f'<p class="note">{e(n)}</p>' for n in notes)
  return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
          f'<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n'
          f'<h1>{e(title)}</h1>\n{notes_html}\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n')


def write(path: str | Path, **kwargs) -> Path:
  """Renders (``render``'s keyword arguments) and writes ``path`` atomically."""
  path = Path(path)
  atomic_write_text(path, render(**kwargs))
  return path


def _table_html(table: Styler | pd.DataFrame, uuid: str) -> str:
  if isinstance(table, pd.DataFrame):
    # A fixed id (not Styler's random one): the same inputs, the same file.
    table = table.style.format(escape="html", na_rep="").set_uuid(uuid)
  if not isinstance(table, Styler):
    raise TypeError(f"a table is a DataFrame or a Styler, not {type(table).__name__}")
  return table.to_html()


def png_data_uri(png: bytes) -> str:
  if not isinstance(png, (bytes, bytearray)) or not bytes(png[:8]) == PNG_MAGIC:
    raise ValueError("a figure is PNG bytes (e.g. a file figures.* wrote, read back)")
  return "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")


def _figure_html(caption: str, png: bytes, shown: bool = True) -> str:
  """An embedded PNG; its caption shown under it, or only as its alt text
  (where the section's heading already says it)."""
  e = html.escape
  under = f"<figcaption>{e(caption)}</figcaption>" if shown else ""
  return (f'<figure><img src="{png_data_uri(png)}" alt="{e(caption, quote=True)}">'
          f'{under}</figure>')


def _num(v) -> str:
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.4g}"
  return "" if v is None else str(v)


def _curves_html(records: Sequence[Mapping]) -> str:
  from benchmark.figures import learning_curves
  png = learning_curves(records)
  rows = []
  for r in records:
    cfg = r.get("config") or {}
    best = r.get("best_epoch")
    vals, epochs = r.get("val_curve") or [], r.get("val_epochs")
    # The validation score of the selected epoch, where the record says which entry it is.
    best_val = None
    if isinstance(best, int) and vals:
      if epochs is not None and best in epochs:
        best_val = vals[list(epochs).index(best)]
      elif epochs is None and len(vals) == len(r["loss_curve"]):
        best_val = vals[best]
    rows.append({"kind": r.get("kind"), "key": r.get("key"), "seed": r.get("seed"),
                 "lr": _num(cfg.get("lr")), "epochs": len(r["loss_curve"]),
                 "selected epoch": "" if best is None else best + 1,
                 "ID validation at it": _num(best_val), "metric": r.get("metric")})
  frame = pd.DataFrame(rows)
  listing = (frame.style.format(escape="html", na_rep="").hide(axis="index")
             .set_uuid("components").to_html())
  return (_figure_html("Train loss and ID-validation metric per epoch, per component "
                       "(★: the epoch whose weights were kept).", png)
          + f'<details><summary>{len(rows)} components</summary>'
          f'<div class="wide">{listing}</div></details>')


def _provenance_html(provenance: Mapping) -> str:
  e = html.escape
  rows = []
  for k, v in provenance.items():
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
      cell = f"<pre>{e(json.dumps(list(v)))}</pre>"   # e.g. argv: one line, wrapped
    elif isinstance(v, (Mapping, list, tuple)):
      cell = f"<pre>{e(json.dumps(v, indent=1, sort_keys=True, default=str))}</pre>"
    else:
      cell = e(_num(v))
    rows.append(f'<tr><td class="key">{e(str(k))}</td><td>{cell}</td></tr>')
  return (f'<table class="provenance"><tbody>{"".join(rows)}</tbody></table>'
          f'<details><summary>as JSON</summary><pre>'
          f'{e(json.dumps(provenance, indent=1, sort_keys=True, default=str))}</pre></details>')
