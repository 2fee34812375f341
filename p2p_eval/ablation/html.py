"""``index.html`` of the ablation report: every table (ours with CIs beside the paper's), the rank
comparison, the sample grids, Figure 7 and provenance; images are relative paths, so it opens from disk.
Reports in sub-folders (``OUT/*/index.html``, e.g. the Facades table's ``reports/quick/facades/``) and a report in
the parent folder are linked, so one report folder leads to the others."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from p2p_eval.ablation.report import (KIND_NOTES, direction_text, fmt, fmt_seconds, footnotes, has_ci, metric_cell,
                                      paper_digits, paper_metrics, provenance_lines, reference_text, row_marks,
                                      short_digest, source_header, table_metrics, table_rows)
from p2p_eval.fsutil import atomic_write_text

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}tr.gt td{font-style:italic;background:#fafafa}
td.paper{color:#555}td.order{text-align:left}img{max-width:100%;border:1px solid #ddd}code{font-size:12px}.small{color:#666;font-size:12px}
"""


def _table_html(table: dict[str, Any], meta: dict[str, Any]) -> str:
    metrics, papers = table_metrics(table), paper_metrics(table)
    plabel = "paper" if table.get("paper_source", "the paper") == "the paper" else "source"
    head = "".join(f"<th>{escape(m['label'])}{' [95% CI]' if has_ci(m) else ''}</th>" for m in metrics)
    head += "".join(f"<th>{escape(source_header(plabel, m))}</th>" for m in papers)
    body = []
    for r in table_rows(table):
        cls = ' class="gt"' if r is table.get("ground_truth") else ""
        cells = "".join(f"<td>{escape(metric_cell(r, m))}</td>" for m in metrics)
        cells += "".join(f'<td class="paper">{fmt(r["paper"].get(m["key"]), paper_digits(table, m))}</td>' for m in papers)
        body.append(f"<tr{cls}><td>{escape(r['label'] + row_marks(r, meta))}</td>{cells}</tr>")
    notes = "".join(f'<p class="small">{escape(n)}</p>' for n in footnotes(table, meta))
    labels = {m["key"]: m["label"] for m in metrics}
    ranks = "".join(f"<tr><td>{escape(labels.get(key, key))}</td><td class=\"order\">{escape(k['ours_order'])}</td>"
                    f"<td class=\"order\">{escape(k['paper_order'])}</td>"
                    f"<td>{fmt(k['tau'], 2)}</td><td>{fmt(k['p_value'], 2)}</td>"
                    f"<td class=\"order\">{escape(k.get('all_order', k['ours_order']))}</td></tr>"
                    for key, k in table["kendall"].items())
    times = "".join(f"<tr><td>{escape(r['label'])}</td><td><code>{escape(r['generator'])}</code></td><td>{r['size']}</td>"
                    f"<td>{r['batch_size']}</td><td>{r['steps']}</td><td>{fmt_seconds(r['seconds'].get('train'))}</td>"
                    f"<td>{fmt_seconds(r['seconds'].get('translate'))}</td><td>{fmt_seconds(r['seconds'].get('score'))}</td>"
                    f"<td>{escape(r['device'])}</td><td>{escape(r.get('commit') or 'n/a')}</td>"
                    f"<td><code>{short_digest(r.get('code_digest'))}</code></td><td><code>{short_digest(r.get('data_fingerprint'))}</code></td>"
                    f"<td>{escape('; '.join(x for x in (r['note'], *r.get('stale', [])) if x))}</td></tr>"
                    for r in table["rows"])
    name = table["name"]
    kind_note = f'<p class="small">{escape(KIND_NOTES[table["kind"]])}</p>' if table.get("kind") in KIND_NOTES else ""
    source = (f'<p class="small">Source numbers: {escape(table["paper_source"])}.</p>'
              if table.get("paper_source", "the paper") != "the paper" else "")
    return f"""
<h2 id="{name}">{escape(table['title'])}</h2>
<p class="small">Varies: {escape(table['varies'])}. Direction: {escape(direction_text(table))}. Files: <a href="{name}.md">{name}.md</a>, <a href="{name}.csv">{name}.csv</a></p>
{kind_note}{source}
<table><tr><th>Row</th>{head}</tr>{''.join(body)}</table>{notes}
<p class="small">{escape(reference_text(table))}</p>
<h3>Rank comparison</h3>
<table><tr><th>Metric</th><th>our order (best first)</th><th>{plabel}'s order</th><th>Kendall tau-b</th><th>p</th><th>all rows, ours</th></tr>{ranks}</table>
<h3>Samples (input | each row | target)</h3>
<img src="samples_{name}.png" alt="sample outputs of {name}">
<details><summary>Time and provenance per row</summary><table><tr><th>Row</th><th>generator</th><th>size</th><th>batch</th>
<th>steps</th><th>train</th><th>translate</th><th>score</th><th>device</th><th>commit</th><th>code</th><th>data</th><th>note</th></tr>
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
<p class="small">Histogram intersection with the real val photos (1 = identical). The paper's finding (section
4.2): L1 gives a narrower, greyer distribution than the ground truth; the cGAN and the PixelGAN push it closer. Data:
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
    prov = "".join(f"<li>{escape(line[2:].replace('`', ''))}</li>" for line in provenance_lines(meta))
    titles = ", ".join(t["title"].split(":")[0] for t in tables)
    intro = ("<p>FCN-scores of each row's translations of the val labels, scored by the segmenter below; the paper's "
             "numbers beside them. Absolute values depend on the segmenter; compare the ordering (Kendall tau).</p>"
             if fcn else "<p>Each row's scores with 95% intervals beside the source's numbers; compare the ordering "
             "(Kendall tau).</p>")
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pix2pix ablations: {escape(meta['name'])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(titles)}{' and Figure 7' if fcn else ''}, regenerated ({escape(meta['name'])})</h1>
<p>{toc} · <a href="report.json">report.json</a></p>
{_linked_reports(out_dir)}
{intro}
<ul class="small">{prov}</ul>
{''.join(_table_html(t, meta) for t in tables)}
{_figure7_html(figure7) if fcn else ''}
</body></html>
"""
    return atomic_write_text(out_dir / "index.html", html)


def refresh_index(out_dir: Path) -> Path:
    """Rewrite ``out_dir/index.html`` from its ``report.json`` (e.g. to link a report written later in a sub-folder)."""
    data = json.loads((Path(out_dir) / "report.json").read_text())
    return write_index(Path(out_dir), data["tables"], data["meta"], data.get("figure7"))
