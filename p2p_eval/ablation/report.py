"""The ablation report: ``tableN.md`` / ``tableN.csv`` (ours with 95% CIs beside the paper's numbers, the
ground-truth row, provenance, time per row), a rank comparison per table and ``report.json`` with everything
(read by :mod:`p2p_eval.ablation.html` for ``index.html``).

Rank comparison: Kendall's tau-b (Kendall 1945, "The treatment of ties in ranking problems"; the tau-b of
``scipy.stats.kendalltau``, which the tests compare against) between our scores and the paper's over a table's
rows, counted pair by pair here, and its two-sided p-value from the exact permutation distribution (every
ordering of our scores against the paper's, ties kept; equal to scipy's exact p-value when nothing is tied).

Provenance per row: the git commit, code digest and data fingerprint recorded by the row's run
(:mod:`p2p_eval.ablation.provenance`); a row made by other code than the report's is marked †, one trained on
other data content ‡, with a footnote under each table.

Absolute FCN-scores depend on the segmenter (the paper used Caffe FCN-8s on 2048x1024 labels; we use the
segmenter given at its own input size), so the ordering of the rows is the finding to compare.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2p_eval.ablation.tables import METRICS, SCORE_KEYS, TableSpec
from p2p_eval.fsutil import atomic_write_text, write_json

METRIC_NAMES = {"pixel": "Per-pixel acc.", "class": "Per-class acc.", "iou": "Class IOU"}
CSV_COLUMNS = ["table", "row", "label", "generator", *[f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")],
               *[f"paper_{m}" for m in METRICS], "size", "batch_size", "steps", "images_seen", "train_s",
               "translate_s", "score_s", "device", "run", "commit", "code_digest", "data_fingerprint", "flags", "note"]
#: Row marks: made by other code than the report's / trained on other data content.
OTHER_CODE, OTHER_DATA = "\u2020", "\u2021"
EXACT_MAX_N = 8
MONTE_CARLO = 20000


def scores_of(result: dict | None) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """(scores, 95% intervals) keyed pixel / class / iou from a ``score_folder`` JSON (None: all n/a)."""
    result = result or {}
    ci = result.get("ci95") or {}
    ours = {m: result.get(SCORE_KEYS[m]) for m in METRICS}
    return ours, {m: list(ci.get(SCORE_KEYS[m]) or [None, None]) for m in METRICS}


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b = (C - D) / sqrt((P - Tx) (P - Ty)) over the P = n(n-1)/2 pairs, C / D concordant /
    discordant pairs, Tx / Ty pairs tied in x / in y; None when a column is constant or n < 2."""
    n = len(x)
    pairs = n * (n - 1) // 2
    s = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            s += dx * dy
            tied_x += dx == 0
            tied_y += dy == 0
    denom = (pairs - tied_x) * (pairs - tied_y)
    return None if denom == 0 else s / math.sqrt(denom)


def permutation_p_value(x: Sequence[float], y: Sequence[float], tau: float, seed: int = 0) -> float:
    """Two-sided p of ``tau``: the share of orderings of ``x`` against ``y`` whose |tau-b| >= |tau|, over all
    n! orderings for n <= :data:`EXACT_MAX_N`, else :data:`MONTE_CARLO` seeded random ones (+1 correction)."""
    def extreme(perm: Sequence[float]) -> bool:
        t = kendall_tau_b(perm, y)
        return t is not None and abs(t) >= abs(tau) - 1e-12

    if len(x) <= EXACT_MAX_N:
        perms = list(itertools.permutations(x))
        return sum(extreme(p) for p in perms) / len(perms)
    rng = random.Random(seed)
    hits = 0
    for _ in range(MONTE_CARLO):
        perm = list(x)
        rng.shuffle(perm)
        hits += extreme(perm)
    return (hits + 1) / (MONTE_CARLO + 1)


def rank_comparison(ours: list[float | None], paper: list[float]) -> dict[str, Any]:
    """Kendall's tau-b of our scores against the paper's over the same rows and its permutation p-value;
    tau None when undefined (fewer than two rows, a missing score, or a constant column)."""
    if len(ours) < 2 or any(v is None for v in ours):
        return {"tau": None, "p_value": None, "n": len(ours)}
    values = [float(v) for v in ours if v is not None]
    tau = kendall_tau_b(values, paper)
    if tau is None:
        return {"tau": None, "p_value": None, "n": len(ours)}
    return {"tau": tau, "p_value": permutation_p_value(values, paper, tau), "n": len(ours)}


def order(labels: list[str], values: list[float | None]) -> str:
    """Labels from best to worst (``a > b = c``: equal values joined by '=')."""
    pairs = sorted(((v, lab) for lab, v in zip(labels, values) if v is not None), key=lambda t: -t[0])
    text = ""
    for i, (v, lab) in enumerate(pairs):
        if i:
            text += " = " if math.isclose(v, pairs[i - 1][0], abs_tol=1e-9) else " > "
        text += lab
    return text


def table_record(spec: TableSpec, rows: list[dict[str, Any]], ground_truth: dict) -> dict[str, Any]:
    """The JSON record of one table. ``rows`` items: label, generator, paper, result (score JSON), run, size,
    batch_size, steps, images_seen, seconds {train, translate, score}, device, note."""
    out_rows = []
    for row in rows:
        ours, ci = scores_of(row["result"])
        out_rows.append({k: v for k, v in row.items() if k != "result"} | {"ours": ours, "ci95": ci})
    gt_ours, gt_ci = scores_of(ground_truth)
    labels = [r["label"] for r in out_rows]
    ranks = {}
    for m in METRICS:
        ours_m = [r["ours"][m] for r in out_rows]
        paper_m = [r["paper"][m] for r in out_rows]
        ranks[m] = {**rank_comparison(ours_m, paper_m), "ours_order": order(labels, ours_m),
                    "paper_order": order(labels, paper_m)}
    return {"id": spec.id, "name": spec.name, "title": spec.title, "varies": spec.varies, "rows": out_rows,
            "ground_truth": {"label": spec.ground_truth_label, "ours": gt_ours, "ci95": gt_ci,
                             "paper": spec.ground_truth_paper, "paper_source": spec.ground_truth_source,
                             "images": ground_truth.get("images"),
                             "through": ground_truth.get("source", {}).get("through")},
            "kendall": ranks}


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(value: float | None, ci: list[float | None]) -> str:
    if value is None:
        return "n/a"
    if ci[0] is None:
        return _f(value)
    return f"{_f(value)} [{_f(ci[0])}, {_f(ci[1])}]"


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def row_marks(row: dict[str, Any], meta: dict[str, Any]) -> str:
    """"\u2020" when the row's run was made by other code than the report (code digest differs or unknown),
    "\u2021" when it was trained on other data content; "" for a current row and the ground-truth row."""
    if "code_digest" not in row:
        return ""
    marks = OTHER_CODE if row["code_digest"] != meta.get("code_digest") else ""
    data_fp = (meta.get("data") or {}).get("fingerprint")
    return marks + (OTHER_DATA if row.get("data_fingerprint") != data_fp else "")


def footnotes(table: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The footnotes of the marks used in ``table`` (see :func:`row_marks`), one line each."""
    marks = "".join(row_marks(r, meta) for r in table["rows"])
    code = _short(meta.get("code_digest"))
    notes = []
    if OTHER_CODE in marks:
        notes.append(f"{OTHER_CODE} made by other code than this report's (code digest {code}): its run is stale "
                     "(see its commit below); `p2p-eval ablate --retrain-stale` retrains it")
    if OTHER_DATA in marks:
        notes.append(f"{OTHER_DATA} trained on other data content than this report's (data fingerprint "
                     f"{_short((meta.get('data') or {}).get('fingerprint'))}); `--retrain-stale` retrains it")
    return notes


def _short(digest: str | None) -> str:
    return "unknown" if not digest else digest[:12]


def table_markdown(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """``tableN.md``: scores with CIs beside the paper's, ground truth, rank comparison, provenance, times."""
    head = f"| Row | {' | '.join(METRIC_NAMES[m] + ' [95% CI]' for m in METRICS)} | " \
           f"{' | '.join('paper ' + METRIC_NAMES[m].lower() for m in METRICS)} |"
    lines = [f"# {table['title']}", "", f"Reproduced by p2p-eval ({meta['name']}): preset **{meta['preset']['name']}** "
             f"({meta['preset']['description']}). Varies: {table['varies']}.", "", head,
             "|" + "---|" * (1 + 2 * len(METRICS))]
    for r in table["rows"] + [table["ground_truth"]]:
        cells = [_ci(r["ours"][m], r["ci95"][m]) for m in METRICS] + [_f(r["paper"][m], 2) for m in METRICS]
        lines.append(f"| {r['label']}{row_marks(r, meta)} | {' | '.join(cells)} |")
    gt = table["ground_truth"]
    notes = footnotes(table, meta)
    lines += [""] + [f"{n}  " for n in notes] + ([""] if notes else [])
    through = (f", first resized to {gt['through']}x{gt['through']} as the generated images are, so that both pass "
               "the same resolution bottleneck" if gt.get("through") else "")
    lines += [f"Ground truth = the real val photos through the same segmenter ({gt['images']} images{through}); the "
              f"paper's ground-truth numbers are from its {gt['paper_source']}. 95% CIs: percentile bootstrap over images (1000 replicates).",
              "", "## Rank comparison (the ordering is the finding; absolute numbers depend on the segmenter)", "",
              "| Metric | our order (best first) | paper's order | Kendall tau-b | p |", "|---|---|---|---|---|"]
    for m in METRICS:
        k = table["kendall"][m]
        lines.append(f"| {METRIC_NAMES[m]} | {k['ours_order']} | {k['paper_order']} | {_f(k['tau'], 2)} | "
                     f"{_f(k['p_value'], 2)} |")
    lines += ["", "## How it was made", "", *provenance_lines(meta), "",
              "| Row | generator | size | batch | steps | images seen | train | translate | score | device | commit | "
              "code | data | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        s = r["seconds"]
        lines.append(f"| {r['label']}{row_marks(r, meta)} | `{r['generator']}` | {r['size']} | {r['batch_size']} | "
                     f"{r['steps']} | {r['images_seen']} | {_secs(s.get('train'))} | {_secs(s.get('translate'))} | "
                     f"{_secs(s.get('score'))} | {r['device']} | {r.get('commit') or 'n/a'} | "
                     f"`{_short(r.get('code_digest'))}` | `{_short(r.get('data_fingerprint'))}` | "
                     f"{'; '.join(x for x in (r['note'], *r.get('stale', [])) if x)} |")
    lines += ["", "Runs: " + ", ".join(f"`{r['run']}`" for r in table["rows"]), ""]
    return "\n".join(lines)


def provenance_lines(meta: dict[str, Any]) -> list[str]:
    """Bullet lines: git commit and code digest, preset, data and its fingerprint, segmenter fingerprint,
    protocol, launcher, device, date."""
    seg = meta["segmenter"]
    data = meta["data"]
    version = f"p2p-eval {meta['version']}, " if meta.get("version") else ""
    return [f"- code: {version}git commit `{meta['git'] or 'none (not a git checkout)'}`, digest of the training and "
            f"translation sources `{_short(meta.get('code_digest'))}`; created {meta['created']}; "
            f"launcher {meta['launcher']}",
            f"- preset: {meta['preset']['name']} — overrides {json.dumps(meta['preset']['overrides'])}"
            + (f"; user overrides {json.dumps(meta['overrides'])}" if meta["overrides"] else ""),
            f"- data: `{data['path']}` ({data['train']} train / {data['val']} val pairs, direction BtoA: labels -> photo), "
            f"content fingerprint `{_short(data.get('fingerprint'))}`",
            f"- segmenter: {seg.get('arch')}/{seg.get('encoder')} at {seg.get('input_size')}x{seg.get('input_size')}, "
            f"sha256 `{seg.get('sha256')}` (`{meta['segmenter_path']}`)",
            f"- FCN-score protocol: {meta['protocol']}",
            f"- devices: {', '.join(meta['devices']) or 'n/a'}; total row time {_secs(meta['total_seconds'])}",
            f"- differences from the paper: {meta['differences']}"]


def table_csv(table: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """``tableN.csv``: one line per row plus the ground-truth row (generator empty), :data:`CSV_COLUMNS`;
    ``flags`` holds the row's marks against ``meta`` (:func:`row_marks`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for i, r in enumerate(table["rows"] + [table["ground_truth"]], 1):
        line: dict[str, Any] = {"table": table["id"], "row": i, "label": r["label"], "generator": r.get("generator", "")}
        for m in METRICS:
            line[m], (line[f"{m}_lo"], line[f"{m}_hi"]) = r["ours"][m], r["ci95"][m]
            line[f"paper_{m}"] = r["paper"][m]
        s = r.get("seconds", {})
        line.update({"size": r.get("size", ""), "batch_size": r.get("batch_size", ""), "steps": r.get("steps", ""),
                     "images_seen": r.get("images_seen", ""), "train_s": s.get("train", ""),
                     "translate_s": s.get("translate", ""), "score_s": s.get("score", ""),
                     "device": r.get("device", ""), "run": r.get("run", ""), "commit": r.get("commit", ""),
                     "code_digest": r.get("code_digest", ""), "data_fingerprint": r.get("data_fingerprint", ""),
                     "flags": row_marks(r, meta or {}) if meta is not None else "", "note": r.get("note", "")})
        writer.writerow({k: "" if v is None else v for k, v in line.items()})
    return buf.getvalue()


def write_tables(out_dir: Path, tables: list[dict[str, Any]], meta: dict[str, Any]) -> list[Path]:
    """Write ``tableN.md`` and ``tableN.csv`` for each table; returns the paths."""
    paths = []
    for table in tables:
        paths.append(atomic_write_text(out_dir / f"{table['name']}.md", table_markdown(table, meta)))
        paths.append(atomic_write_text(out_dir / f"{table['name']}.csv", table_csv(table, meta)))
    return paths


def write_report_json(out_dir: Path, tables: list[dict[str, Any]], meta: dict[str, Any],
                      figure7: dict[str, Any] | None) -> Path:
    """``report.json``: provenance, every table record and the Figure 7 intersections."""
    return write_json(out_dir / "report.json", {"meta": meta, "tables": tables, "figure7": figure7})
