"""The ablation report: ``tableN.md`` / ``tableN.csv`` (ours with 95% CIs beside the paper's numbers, the
ground-truth row, provenance, time per row), a rank comparison per table and ``report.json`` with everything
(read by :mod:`p2p_eval.ablation.html` for ``index.html``).

One report path for every kind of table: the metric columns come from the table spec
(:class:`p2p_eval.ablation.tables.Metric`: label, key in the score JSON, ``higher_is_better``, digits, ranked or
information only), so the FCN-score tables (1-3), Table 6 (decoded label maps) and the image-metric table of
the Modified Pix2Pix paper share the markdown, CSV, rank comparison and HTML code. A metric the source printed for some
rows only is ranked over those rows; orders are best first by the metric's ``higher_is_better``.

Rank comparison: Kendall's tau-b (Kendall 1945, "The treatment of ties in ranking problems"; the tau-b of
``scipy.stats.kendalltau``, which the tests compare against) between our scores and the paper's over a table's
rows, counted pair by pair here, and its two-sided p-value from the exact permutation distribution (every
ordering of our scores against the paper's, ties kept; equal to scipy's exact p-value when nothing is tied).

Provenance per row: the git commit, code digest and data fingerprint recorded by the row's run
(:mod:`p2p_eval.ablation.provenance`); a row made by other code than the report's is marked †, one trained on
other data content ‡, with a footnote under each table.

What a report is: every table's title names the data its rows really ran on and the preset, beside the setting of
the source's numbers; its header gives the steps each row trained. A pipeline-check preset (``smoke``) opens each
table with a banner saying so and shows neither the paper's numbers nor the comparison with them (the CSV keeps
them). A row's note (e.g. "trained and translated at 96x96") stands in the score table beside its scores.

What a report reproduces: its preset names the reference (the paper, or the public PyTorch code), and the
provenance lists the differences from it that remain (``meta.differences``, one string; ``meta.difference_list``,
the same items) and the training precision asked for and logged by the runs.

Absolute FCN-scores depend on the segmenter (the paper used Caffe FCN-8s on 2048x1024 labels; we use the
segmenter given at its own input size), so the ordering of the rows is the finding to compare.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2p_eval.ablation.tables import FCN_LABELS, FCN_METRICS, Metric, TableSpec
from p2p_eval.fsutil import atomic_write_text, write_json
from p2p_eval.segmentation.model import input_hw

METRIC_NAMES = dict(FCN_LABELS)
#: The package folder (``p2p_eval/``); its parent is the repository root in a checkout.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def csv_columns(metrics: Sequence[dict[str, Any] | Metric] = FCN_METRICS) -> list[str]:
    """The CSV header of a table with ``metrics``: value and CI bounds of each, the source's value of each ranked
    one, then size, times, provenance."""
    ms = [_metric(m) for m in metrics]
    return ["table", "row", "label", "generator", *[f"{m['key']}{s}" for m in ms for s in ("", "_lo", "_hi")],
            *[f"paper_{m['key']}" for m in ms if m["rank"]], "size", "batch_size", "steps", "images_seen", "train_s",
            "translate_s", "score_s", "device", "run", "commit", "code_digest", "data_fingerprint", "flags", "note"]


def _metric(m: dict[str, Any] | Metric) -> dict[str, Any]:
    return dataclasses.asdict(m) if isinstance(m, Metric) else m


CSV_COLUMNS = csv_columns()
#: Row marks: made by other code than the report's / trained on other data content.
OTHER_CODE, OTHER_DATA = "\u2020", "\u2021"
EXACT_MAX_N = 8
MONTE_CARLO = 20000


def scores_of(result: dict | None, metrics: Sequence[Metric] = FCN_METRICS
              ) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """(scores, 95% intervals) keyed by metric key (default pixel / class / iou) from a score JSON (None: all n/a)."""
    result = result or {}
    ci = result.get("ci95") or {}
    ours = {m.key: result.get(m.score) for m in metrics}
    return ours, {m.key: list(ci.get(m.score) or [None, None]) for m in metrics}


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


def table_record(spec: TableSpec, rows: list[dict[str, Any]], ground_truth: dict | None) -> dict[str, Any]:
    """The JSON record of one table. ``rows`` items: label, generator, paper, result (score JSON), run, size,
    batch_size, steps, images_seen, seconds {train, translate, score}, device, note. ``ground_truth``: the
    reference row's score JSON (None: the table shows none). Optional metrics no row has are left out; each
    ranked metric gets a rank comparison over the rows the source has numbers for."""
    results = [row["result"] or {} for row in rows]
    metrics = [m for m in spec.metrics if not m.optional or any(r.get(m.score) is not None for r in results)]
    out_rows = []
    for row in rows:
        ours, ci = scores_of(row["result"], metrics)
        paper = {m.key: row["paper"].get(m.key) for m in metrics if m.rank}
        out_rows.append({k: v for k, v in row.items() if k != "result"} | {"ours": ours, "ci95": ci, "paper": paper})
    ranks = {}
    for m in metrics:
        if not m.rank:
            continue
        sign = 1.0 if m.higher_is_better else -1.0
        have = [r for r in out_rows if r["paper"][m.key] is not None]
        ours_m = [r["ours"][m.key] for r in have]
        paper_m = [r["paper"][m.key] for r in have]
        labels = [r["label"] for r in have]
        ranks[m.key] = {**rank_comparison(ours_m, paper_m),
                        "ours_order": order(labels, [None if v is None else sign * v for v in ours_m]),
                        "paper_order": order(labels, [sign * v for v in paper_m]),
                        "all_order": order([r["label"] for r in out_rows],
                                           [None if r["ours"][m.key] is None else sign * r["ours"][m.key]
                                            for r in out_rows])}
    gt = None
    if ground_truth is not None and spec.ground_truth_label is not None:
        gt_ours, gt_ci = scores_of(ground_truth, metrics)
        gt = {"label": spec.ground_truth_label, "ours": gt_ours, "ci95": gt_ci,
              "paper": {m.key: spec.ground_truth_paper.get(m.key) for m in metrics if m.rank},
              "paper_source": spec.ground_truth_source, "images": ground_truth.get("images"),
              "through": (ground_truth.get("source") or {}).get("through")}
    return {"id": spec.id, "name": spec.name, "title": spec.title, "setting": spec.setting, "varies": spec.varies,
            "kind": spec.kind,
            "data": spec.data, "paper_source": spec.paper_source, "metrics": [dataclasses.asdict(m) for m in metrics],
            "rows": out_rows, "ground_truth": gt, "kendall": ranks}


def table_metrics(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The metric columns of a table record (records written before metrics were recorded: the FCN three)."""
    return [_metric(m) for m in table.get("metrics") or FCN_METRICS]


def paper_metrics(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranked metrics with the source's numbers for at least one row (their "paper" columns)."""
    rows = table["rows"] + ([table["ground_truth"]] if table.get("ground_truth") else [])
    return [m for m in table_metrics(table) if m["rank"] and any(r["paper"].get(m["key"]) is not None for r in rows)]


def paper_digits(table: dict[str, Any], metric: dict[str, Any]) -> int:
    """Digits of the source's numbers: the paper's two for accuracies, the metric's own otherwise."""
    return 2 if table.get("kind", "fcn") in ("fcn", "labels") else metric["digits"]


def has_ci(metric: dict[str, Any]) -> bool:
    """True when the metric's column carries 95% intervals (ranked metrics other than set-level ones)."""
    return bool(metric["rank"] and metric.get("ci", True))


def source_header(plabel: str, metric: dict[str, Any]) -> str:
    """The header of a source-number column: "paper per-pixel acc." (the paper's tables), "source PSNR (dB)"."""
    return f"{plabel} {metric['label'].lower() if plabel == 'paper' else metric['label']}"


def table_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a table record followed by its reference row, if any."""
    return table["rows"] + ([table["ground_truth"]] if table.get("ground_truth") else [])


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, or "n/a"."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_ci(value: float | None, ci: list[float | None], digits: int = 3) -> str:
    """``value [lo, hi]``, the value alone without an interval, "n/a" without a value."""
    if value is None:
        return "n/a"
    if ci[0] is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def fmt_seconds(x: float | None) -> str:
    """Seconds below two minutes, minutes above; "-" when unknown."""
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
    code = short_digest(meta.get("code_digest"))
    notes = []
    if OTHER_CODE in marks:
        notes.append(f"{OTHER_CODE} made by other code than this report's (code digest {code}): its run is stale "
                     "(see its commit below); `p2p-eval ablate --retrain-stale` retrains it")
    if OTHER_DATA in marks:
        notes.append(f"{OTHER_DATA} trained on other data content than this report's (data fingerprint "
                     f"{short_digest((meta.get('data') or {}).get('fingerprint'))}); `--retrain-stale` retrains it")
    return notes


def report_path(path: str | Path, report_dir: str | Path) -> str:
    """How a report names a file or folder, never by an absolute path of the machine that wrote it: relative to
    the repository (the checkout holding ``pyproject.toml`` beside the package) or, for an installed package, to
    the package's parent folder (``p2p_eval/...``) when inside it; else relative to the report folder when
    inside that; else its name alone."""
    target, root = Path(path).resolve(), PACKAGE_DIR.parent
    if target.is_relative_to(PACKAGE_DIR) or ((root / "pyproject.toml").is_file() and target.is_relative_to(root)):
        return target.relative_to(root).as_posix()
    report_dir = Path(report_dir).resolve()
    if target.is_relative_to(report_dir):
        return target.relative_to(report_dir).as_posix()
    return target.name


def short_digest(digest: str | None) -> str:
    """The first 12 hex digits of a digest, or "unknown"."""
    return "unknown" if not digest else digest[:12]


def metric_cell(r: dict[str, Any], m: dict[str, Any]) -> str:
    """A row's value of metric ``m`` with its 95% interval, as a table cell."""
    return fmt_ci(r["ours"].get(m["key"]), r["ci95"].get(m["key"]) or [None, None], m["digits"])


def reference_text(table: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """What the table's reference row is (or why there is none) and what its CIs are; where the source's
    reference numbers come from unless ``meta`` is a pipeline check's (which leaves them out)."""
    gt = table.get("ground_truth")
    kind = table.get("kind", "fcn")
    boot = "95% CIs: percentile bootstrap over images (1000 replicates)."
    if kind == "image":
        return (f"No reference row: a real photo against itself scores trivially (MSE 0, SSIM 1). {boot} The Lab "
                "histogram intersections are set-level values without an interval.")
    if gt is None:
        return boot
    if kind == "labels":
        through = gt.get("through")
        return (f"{gt['label']} = the true val label maps ({_count(gt['images'], 'image')}) resized "
                f"nearest-neighbour to {through}x{through} and back, scored as a generated map is: the ceiling a perfect generator reaches "
                "at the rows' resolution (the paper prints no such row). Its far-pixel share is that of the true colour "
                f"maps themselves (JPEG noise in pix2pix's files), the reference for the rows'. {boot}")
    through = (f", first resized to {gt['through']}x{gt['through']} as the generated images are, so that both pass "
               "the same resolution bottleneck" if gt.get("through") else "")
    source = ("" if is_pipeline_check(meta or {})
              else f" the paper's ground-truth numbers are from its {gt['paper_source']}.")
    return (f"Ground truth = the real val photos through the same segmenter ({_count(gt['images'], 'image')}"
            f"{through});{source} {boot}")


#: What each kind of table measures, printed under its title.
KIND_NOTES = {
    "labels": ("How it is scored: each generated image is read as a colour label map: every pixel takes the train id "
               "of the nearest colour (RGB distance) of the Cityscapes palette (19 train colours; void colours -> "
               "ignored label 255 in the prediction, which counts as a miss), the ids are resized nearest-neighbour to "
               "the true labels' size and scored with the FCN-score's confusion matrix (no segmenter). *Far pixels* "
               "lie more than 50 RGB units from every palette colour: they are decoded to their nearest colour anyway "
               "but doubtful (`p2p_eval.metrics.labelmap`, `far=\"void\"` would count them as misses instead)."),
    "image": ("How it is scored: each generated photo against the real photo of the same val frame at the generated "
              "side: MSE on [0, 1] images (the document's \"per-pixel accuracy\"), PSNR, SSIM, averaged over images "
              "(lower MSE, higher PSNR / SSIM are better); the Lab histogram intersections (pix2pix's Figure 7 "
              "measure, 1 = same colour distribution as the real photos); LPIPS only when weights are given. "
              "The source's numbers are from another data set: compare the ordering, not the values."),
}


def is_pipeline_check(meta: dict[str, Any]) -> bool:
    """True for a report of a pipeline-check preset (``smoke``; records written before the flag: by its name)."""
    return bool(meta.get("pipeline_check", (meta.get("preset") or {}).get("name") == "smoke"))


def data_name(meta: dict[str, Any]) -> str:
    """What the report's rows trained and were scored on: the given data name, else the data folder's name."""
    data = meta.get("data") or {}
    return str(data.get("name") or data.get("path") or "unnamed data")


def source_label(table: dict[str, Any]) -> str:
    """"paper" for the pix2pix tables, "source" for a table whose numbers come from another document."""
    return "paper" if table.get("paper_source", "the paper") == "the paper" else "source"


def report_title(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """The table's title with the data and preset its rows really ran, then the setting of the source's numbers:
    "Table 1: FCN-scores for different losses: ours on synth, preset smoke (pipeline check); the paper's on
    Cityscapes labels -> photos, 256x256, 200 epochs"."""
    title = f"{table['title']}: ours on {data_name(meta)}, preset {meta['preset']['name']}"
    title += " (pipeline check)" if is_pipeline_check(meta) else ""
    return title + (f"; the {source_label(table)}'s on {table['setting']}" if table.get("setting") else "")


def banner_text(meta: dict[str, Any]) -> str | None:
    """The warning a pipeline-check report opens with (None for other reports)."""
    if not is_pipeline_check(meta):
        return None
    return (f"Pipeline check, not a result: preset {meta['preset']['name']} on {data_name(meta)}. These numbers show "
            "that training, translation and scoring run end to end; they are not comparable with the paper's, which "
            "are left out here (the CSV files keep them in their paper_* columns).")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def budget_text(table: dict[str, Any]) -> str:
    """What each row really trained, from its run: "Training per row: 120 steps at batch 1 (120 images seen)", or
    one such part per group of rows that trained alike."""
    groups: dict[tuple[Any, Any], list[str]] = {}
    for r in table["rows"]:
        groups.setdefault((r.get("steps"), r.get("batch_size")), []).append(r["label"])
    parts = []
    for (steps, batch), labels in groups.items():
        text = ("no finished run" if steps is None else
                f"{_count(steps, 'step')} at batch {batch} ({_count(steps * batch, 'image')} seen)")
        parts.append(text if len(groups) == 1 else f"{', '.join(labels)}: {text}")
    return "Training per row: " + "; ".join(parts)


def has_notes(table: dict[str, Any]) -> bool:
    """True when some row carries a note (e.g. "trained and translated at 96x96"): the score table shows them."""
    return any(r.get("note") for r in table["rows"])


def shown_paper_metrics(table: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The source-number columns the score table shows: none in a pipeline check, else :func:`paper_metrics`."""
    return [] if is_pipeline_check(meta) else paper_metrics(table)


def score_header(table: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The header cells of the score table: row, our metrics (with [95% CI]), source numbers, note."""
    metrics, papers = table_metrics(table), shown_paper_metrics(table, meta)
    return ["Row", *[m["label"] + (" [95% CI]" if has_ci(m) else "") for m in metrics],
            *[source_header(source_label(table), m) for m in papers], *(["Note"] if has_notes(table) else [])]


def score_cells(table: dict[str, Any], meta: dict[str, Any], r: dict[str, Any]) -> list[str]:
    """One row of the score table (see :func:`score_header`): its scores, the source's numbers, its note."""
    cells = [r["label"] + row_marks(r, meta), *[metric_cell(r, m) for m in table_metrics(table)],
             *[fmt(r["paper"].get(m["key"]), paper_digits(table, m)) for m in shown_paper_metrics(table, meta)]]
    return cells + ([r.get("note") or ""] if has_notes(table) else [])


def extra_rows(table: dict[str, Any]) -> bool:
    """True when some row has no source number for a ranked metric: then "all rows, ours" differs from our order."""
    return any(k.get("n", len(table["rows"])) < len(table["rows"]) for k in table["kendall"].values())


def rank_header(table: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """Header cells of the rank comparison; a pipeline check shows only our order, over all rows."""
    if is_pipeline_check(meta):
        return ["Metric", "our order (best first)"]
    return ["Metric", "our order (best first)", f"{source_label(table)}'s order", "Kendall tau-b", "p",
            *(["all rows, ours"] if extra_rows(table) else [])]


def rank_cells(table: dict[str, Any], meta: dict[str, Any], label: str, k: dict[str, Any]) -> list[str]:
    """One metric's line of the rank comparison (see :func:`rank_header`)."""
    if is_pipeline_check(meta):
        return [label, k.get("all_order", k["ours_order"])]
    return [label, k["ours_order"], k["paper_order"], fmt(k["tau"], 2), fmt(k["p_value"], 2),
            *([k.get("all_order", k["ours_order"])] if extra_rows(table) else [])]


def rank_lines(table: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(metric label, rank record) of each ranked metric of the table, in column order."""
    return [(m["label"], table["kendall"][m["key"]]) for m in table_metrics(table) if m["key"] in table["kendall"]]


def rank_title(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """The heading of the rank section."""
    if is_pipeline_check(meta):
        return "Our order of the rows (a pipeline check: not compared with the paper)"
    return ("Rank comparison (the ordering is the finding; absolute numbers depend on the "
            + ("segmenter)" if table.get("kind", "fcn") == "fcn" else "data set and protocol)"))


def _md_row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |"


def table_markdown(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """``tableN.md``: title with data and preset, a pipeline-check banner where due, scores with CIs beside the
    source's, reference row, rank comparison, provenance and times."""
    banner = banner_text(meta)
    lines = [f"# {report_title(table, meta)}", "", *([f"> **{banner}**", ""] if banner else []),
             f"Reproduced by p2p-eval ({meta['name']}): preset **{meta['preset']['name']}** "
             f"({meta['preset']['description']}). {budget_text(table)}. Varies: {table['varies']}. "
             f"Direction: {direction_text(table)}.", ""]
    if table.get("kind") in KIND_NOTES:
        lines += [KIND_NOTES[table["kind"]], ""]
    if source_label(table) == "source" and not banner:
        lines += [f"Source numbers: {table['paper_source']}.", ""]
    head = score_header(table, meta)
    lines += [_md_row(head), "|" + "---|" * len(head)]
    lines += [_md_row(score_cells(table, meta, r)) for r in table_rows(table)]
    notes = footnotes(table, meta)
    lines += [""] + [f"{n}  " for n in notes] + ([""] if notes else [])
    rank_head = rank_header(table, meta)
    lines += [reference_text(table, meta), "", f"## {rank_title(table, meta)}", "", _md_row(rank_head),
              "|" + "---|" * len(rank_head)]
    lines += [_md_row(rank_cells(table, meta, label, k)) for label, k in rank_lines(table)]
    lines += ["", "## How it was made", "", *provenance_lines(meta), "", _md_row(PROVENANCE_COLUMNS),
              "|" + "---|" * len(PROVENANCE_COLUMNS)]
    lines += [_md_row(provenance_cells(r, meta, code="`")) for r in table["rows"]]
    lines += ["", "Runs: " + ", ".join(f"`{r['run']}`" for r in table["rows"]), ""]
    return "\n".join(lines)


#: The columns of the per-row time and provenance table.
PROVENANCE_COLUMNS = ["Row", "generator", "size", "batch", "steps", "images seen", "train", "translate", "score",
                      "device", "commit", "code", "data", "note"]


def provenance_cells(r: dict[str, Any], meta: dict[str, Any], code: str = "") -> list[str]:
    """One row of the provenance table (:data:`PROVENANCE_COLUMNS`); ``code`` wraps generator and digests
    (a backtick in markdown)."""
    s = r["seconds"]
    return [r["label"] + row_marks(r, meta), f"{code}{r['generator']}{code}", str(r["size"]), str(r["batch_size"]),
            str(r["steps"]), str(r["images_seen"]), fmt_seconds(s.get("train")), fmt_seconds(s.get("translate")),
            fmt_seconds(s.get("score")), r["device"], r.get("commit") or "n/a",
            f"{code}{short_digest(r.get('code_digest'))}{code}",
            f"{code}{short_digest(r.get('data_fingerprint'))}{code}", "; ".join(x for x in (r["note"], *r.get("stale", [])) if x)]


def direction_text(table: dict[str, Any]) -> str:
    """The translation directions of the table's rows, each with what it maps (e.g. "BtoA (labels -> photo)")."""
    directions = {r.get("direction", "BtoA") for r in table["rows"]}
    what = {("cityscapes", "BtoA"): "labels -> photo", ("cityscapes", "AtoB"): "photo -> labels",
            ("facades", "BtoA"): "labels -> photo", ("facades", "AtoB"): "photo -> labels"}
    return ", ".join(f"{d} ({what.get((table.get('data', 'cityscapes'), d), '?')})" for d in sorted(directions))


def segmenter_frame(seg: dict[str, Any]) -> str:
    """The segmenter's input frame as WIDTHxHEIGHT (:func:`p2p_eval.segmentation.model.input_hw`), "unknown"
    when its record has no size."""
    if not seg.get("input_hw") and not seg.get("input_size"):
        return "unknown"
    height, width = input_hw(seg)
    return f"{width}x{height}"


def reference_name(meta: dict[str, Any]) -> str:
    """What the report reproduces: "the paper" or "the public PyTorch code" (records without it: the paper)."""
    return str(meta.get("reference") or "the paper")


def difference_items(meta: dict[str, Any]) -> list[str]:
    """The differences from the reference, one item each (records with only the joined string: split on "; ")."""
    items = meta.get("difference_list")
    return list(items) if items is not None else [d for d in str(meta.get("differences") or "").split("; ") if d]


def precision_text(meta: dict[str, Any]) -> str:
    """"fp32 (asked fp32)": what the runs logged and what was asked; "" for records without it."""
    precision = meta.get("precision")
    if not isinstance(precision, dict):
        return ""
    return f"{', '.join(precision.get('used') or []) or 'not logged'} (asked {precision.get('asked')})"


def differences_lines(meta: dict[str, Any]) -> list[str]:
    """The markdown bullet of the differences from the reference, one nested bullet per difference."""
    return [f"- differences from {reference_name(meta)} that remain:", *[f"  - {d}" for d in difference_items(meta)]]


def provenance_lines(meta: dict[str, Any], differences: bool = True) -> list[str]:
    """Bullet lines: git commit and code digest, preset and its reference, data and its fingerprint, segmenter
    fingerprint (FCN-score tables), protocol, launcher, device and training precision, date, then (unless
    ``differences`` is False: ``index.html`` lists them itself) :func:`differences_lines`."""
    seg = meta["segmenter"]
    data = meta["data"]
    version = f"p2p-eval {meta['version']}, " if meta.get("version") else ""
    lines = [f"- code: {version}git commit `{meta['git'] or 'none (not a git checkout)'}`, digest of the training and "
             f"translation sources `{short_digest(meta.get('code_digest'))}`; created {meta['created']}; "
             f"launcher {meta['launcher']}",
             f"- preset: {meta['preset']['name']} (reproduces {reference_name(meta)}) — overrides "
             f"{json.dumps(meta['preset']['overrides'])}"
             + (f"; user overrides {json.dumps(meta['overrides'])}" if meta["overrides"] else "") + _budget_note(meta),
             f"- data: {data_name(meta)} (`{data['path']}`, {data['train']} train / {data['val']} val pairs), "
             f"content fingerprint `{short_digest(data.get('fingerprint'))}`"]
    if seg:
        lines.append(f"- segmenter: {seg.get('arch')}/{seg.get('encoder')} at {segmenter_frame(seg)}, "
                     f"sha256 `{seg.get('sha256')}` (`{meta['segmenter_path']}`)")
    lines += [f"- {'FCN-score ' if 'kinds' not in meta else ''}protocol: {meta['protocol']}",
              f"- devices: {', '.join(meta['devices']) or 'n/a'}; total row time {fmt_seconds(meta['total_seconds'])}"
              + (f"; training precision {precision_text(meta)}" if precision_text(meta) else "")]
    return lines + (differences_lines(meta) if differences else [])


def _budget_note(meta: dict[str, Any]) -> str:
    """How the preset's image budget ends the runs (not its "epochs"), or "" when the user's overrides dropped it."""
    budget = meta["preset"].get("images_per_row")
    if not budget or {"epochs", "max_steps"} & set(meta.get("overrides") or {}):
        return ""
    return (f"; the runs stop at a budget of {budget} training images per row (max_steps = ceil({budget} / batch "
            "size)), not after the epochs; each table's header gives the steps its rows ran")


def table_csv(table: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """``tableN.csv``: one line per row plus the reference row if any (generator empty), :func:`csv_columns` of
    the table's metrics; ``flags`` holds the row's marks against ``meta`` (:func:`row_marks`)."""
    metrics = table_metrics(table)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(metrics), lineterminator="\n")
    writer.writeheader()
    for i, r in enumerate(table_rows(table), 1):
        line: dict[str, Any] = {"table": table["id"], "row": i, "label": r["label"], "generator": r.get("generator", "")}
        for m in (m["key"] for m in metrics):
            line[m], (line[f"{m}_lo"], line[f"{m}_hi"]) = r["ours"].get(m), r["ci95"].get(m) or [None, None]
        for m in metrics:
            if m["rank"]:
                line[f"paper_{m['key']}"] = r["paper"].get(m["key"])
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
