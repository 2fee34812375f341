"""``index.html`` of the ablation report: every table (ours with CIs beside the paper's), the rank
comparison, the sample grids, Figure 7 and provenance with the differences from the preset's reference; images
are relative paths, so it opens from disk. Reports in sub-folders (``OUT/*/index.html``, e.g. the Facades table's ``reports/quick/facades/``) and a report in
the parent folder are linked, so one report folder leads to the others."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from p2p_eval.ablation.report import (KIND_NOTES, PROVENANCE_COLUMNS, banner_text, budget_text, data_name,
                                      difference_items, direction_text, footnotes, is_pipeline_check, provenance_cells,
                                      provenance_lines, rank_cells, rank_header, rank_lines, rank_title, reference_name,
                                      reference_text, report_title, score_cells, score_header, shown_paper_metrics,
                                      source_label, table_metrics, table_rows)
from p2p_eval.fsutil import atomic_write_text

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}tr.gt td{font-style:italic;background:#fafafa}
td.paper{color:#555}td.order{text-align:left}img{max-width:100%;border:1px solid #ddd}code{font-size:12px}.small{color:#666;font-size:12px}
.banner{border:2px solid #c60;background:#fff4e5;padding:.6em 1em;font-weight:600}
"""


def _cells(cells: list[str], tag: str = "td", classes: list[str] | None = None) -> str:
    """Escaped table cells; ``classes[i]`` (if any) is the class of cell i."""
    attrs = [f' class="{c}"' if c else "" for c in (classes or [""] * len(cells))]
    return "".join(f"<{tag}{a}>{escape(v)}</{tag}>" for v, a in zip(cells, attrs))


def _table_html(table: dict[str, Any], meta: dict[str, Any]) -> str:
    n_ours, n_paper = 1 + len(table_metrics(table)), len(shown_paper_metrics(table, meta))
    head = score_header(table, meta)
    classes = [""] * n_ours + ["paper"] * n_paper + ["order"] * (len(head) - n_ours - n_paper)
    body = []
    for r in table_rows(table):
        cls = ' class="gt"' if r is table.get("ground_truth") else ""
        body.append(f"<tr{cls}>{_cells(score_cells(table, meta, r), classes=classes)}</tr>")
    notes = "".join(f'<p class="small">{escape(n)}</p>' for n in footnotes(table, meta))
    rank_head = rank_header(table, meta)
    order = ["", "order"] if is_pipeline_check(meta) else ["", "order", "order", "", "", "order"][:len(rank_head)]
    ranks = "".join(f"<tr>{_cells(rank_cells(table, meta, label, k), classes=order)}</tr>"
                    for label, k in rank_lines(table))
    times = "".join(f"<tr>{_cells(provenance_cells(r, meta))}</tr>" for r in table["rows"])
    name = table["name"]
    kind_note = f'<p class="small">{escape(KIND_NOTES[table["kind"]])}</p>' if table.get("kind") in KIND_NOTES else ""
    source = (f'<p class="small">Source numbers: {escape(table["paper_source"])}.</p>'
              if source_label(table) == "source" and not is_pipeline_check(meta) else "")
    return f"""
<h2 id="{name}">{escape(report_title(table, meta))}</h2>
<p class="small">{escape(budget_text(table))}. Varies: {escape(table['varies'])}. Direction: {escape(direction_text(table))}. Files: <a href="{name}.md">{name}.md</a>, <a href="{name}.csv">{name}.csv</a></p>
{kind_note}{source}
<table><tr>{_cells(head, "th")}</tr>{''.join(body)}</table>{notes}
<p class="small">{escape(reference_text(table, meta))}</p>
<h3>{escape(rank_title(table, meta))}</h3>
<table><tr>{_cells(rank_head, "th")}</tr>{ranks}</table>
<h3>Samples (input | each row | target)</h3>
<img src="samples_{name}.png" alt="sample outputs of {name}">
<details><summary>Time and provenance per row</summary><table><tr>{_cells(PROVENANCE_COLUMNS, "th")}</tr>
{times}</table></details>
"""


def _figure7_html(figure7: dict[str, Any] | None) -> str:
    if figure7 is None:
        return "<h2>Figure 7</h2><p>Not drawn: none of its sets (L1, cGAN, L1+cGAN, PixelGAN) was in the chosen tables.</p>"
    rows = "".join(f"<tr><td>{escape(name)}</td>{''.join(f'<td>{v[c]:.3f}</td>' for c in ('L', 'a', 'b'))}</tr>"
                   for name, v in figure7["intersection"].items())
    return f"""
<h2 id="figure7">Figure 7: colour distributions (Lab) of the outputs vs the real photos</h2>
<img src="{figure7['png']}" alt="Figure 7">
<table><tr><th>Set</th><th>L</th><th>a</th><th>b</th></tr>{rows}</table>
<p class="small">Histogram intersection with the real val photos (1 = identical). The plot shows log10 of each
one-unit bin's share of the pixels, one legend for the three panels; a bin without pixels is a gap in its line. The
paper's finding (section 4.2): L1 gives a narrower, greyer distribution than the ground truth; the cGAN and the PixelGAN push it closer. Data:
<a href="{figure7['json']}">{figure7['json']}</a></p>
"""


def _linked_reports(out_dir: Path) -> str:
    """Links to the reports beside this one: sub-folders holding an index.html, and the parent's index.html."""
    links = [(f"{p.parent.name}/index.html", p.parent.name) for p in sorted(out_dir.glob("*/index.html"))]
    if (out_dir.parent / "index.html").is_file():
        links.append(("../index.html", f"{out_dir.parent.name or 'parent'} (parent report)"))
    if not links:
        return ""
    return "<p>Other reports: " + " · ".join(f'<a href="{href}">{escape(text)}</a>' for href, text in links) + "</p>"


def write_index(out_dir: Path, tables: list[dict[str, Any]], meta: dict[str, Any], figure7: dict[str, Any] | None) -> Path:
    """Write ``out_dir/index.html``."""
    fcn = any(t.get("kind", "fcn") == "fcn" for t in tables)
    toc = " · ".join(f'<a href="#{t["name"]}">{escape(t["name"])}</a>' for t in tables)
    toc += ' · <a href="#figure7">figure 7</a>' if fcn else ""
    prov = "".join(f"<li>{escape(line[2:].replace('`', ''))}</li>"
                   for line in provenance_lines(meta, differences=False))
    prov += (f"<li>differences from {escape(reference_name(meta))} that remain:<ul>"
             + "".join(f"<li>{escape(d)}</li>" for d in difference_items(meta)) + "</ul></li>")
    titles = ", ".join(t["title"].split(":")[0] for t in tables) + (" and Figure 7" if fcn else "")
    heading = f"{titles} on {data_name(meta)}, preset {meta['preset']['name']} ({meta['name']})"
    banner = banner_text(meta)
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pix2pix ablations: {escape(meta['name'])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(heading)}</h1>
{f'<p class="banner">{escape(banner)}</p>' if banner else ''}
<p>{toc} · <a href="report.json">report.json</a></p>
{_linked_reports(out_dir)}
<p>{escape(_intro(fcn, bool(banner)))}</p>
<ul class="small">{prov}</ul>
{''.join(_table_html(t, meta) for t in tables)}
{_figure7_html(figure7) if fcn else ''}
</body></html>
"""
    return atomic_write_text(out_dir / "index.html", html)


def _intro(fcn: bool, pipeline_check: bool) -> str:
    """The paragraph under the heading: what the tables hold and what to compare."""
    what = ("FCN-scores of each row's translations of the val labels, scored by the segmenter below"
            if fcn else "Each row's scores with 95% intervals")
    if pipeline_check:
        return f"{what}, and the order of the rows; the paper's numbers are left out of a pipeline check."
    return (f"{what}, beside the {'paper' if fcn else 'source'}'s numbers. Absolute values depend on the "
            f"{'segmenter' if fcn else 'data set and protocol'}; compare the ordering (Kendall tau).")


def refresh_index(out_dir: Path) -> Path:
    """Rewrite ``out_dir/index.html`` from its ``report.json`` (e.g. to link a report written later in a sub-folder)."""
    data = json.loads((Path(out_dir) / "report.json").read_text())
    return write_index(Path(out_dir), data["tables"], data["meta"], data.get("figure7"))
