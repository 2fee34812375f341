"""Tables as data: ``p2p_eval/tables/*.toml`` (package data, so the tables load from any install).

- Tables 1-3 of pix2pix (Isola et al., CVPR 2017, sections 4.2-4.4): FCN-scores (``kind = "fcn"``) of
  labels -> photo generators on Cityscapes, the paper's three scores per row and a ground-truth row.
- Table 6 (section 4.6, ``kind = "labels"``): photo -> labels on Cityscapes, the generated colour label maps
  decoded by nearest palette colour and scored against the true labels (:mod:`p2p_eval.metrics.labelmap`).
- ``modified`` (``kind = "image"``): the comparison of "Modified Pix2Pix Conditional Adversarial Networks for
  Image-to-Image Translation" on CMP Facades labels -> photo with full-reference image metrics.

A spec has a ``title`` (the source's caption, without its data set), an optional ``setting`` (the data set and
training of the source's numbers, e.g. "Cityscapes labels -> photos, 256x256, 200 epochs": a report titles each
table with the data and preset it actually ran beside this), and names its rows by shipped generator variant (``p2p_eval/generators/<name>.toml``), the data set it needs
(``data``: "cityscapes" or "facades"), its metric columns (``[[metrics]]``: key, label, the key in the score
JSON, ``higher_is_better``, digits, whether it is ranked against the source's numbers; the FCN default is
per-pixel accuracy, per-class accuracy and class IoU), each row's published numbers (``paper``; an FCN-score
table needs all three, other tables any subset of the ranked metrics), and an optional ``[ground_truth]`` row.
:data:`TABLES` is the read-only registry (table id -> spec file); :func:`load_table` parses and checks one spec.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from p2p_eval.config import GENERATORS_DIR, generator_names
from p2p_eval.errors import UserError, require_file, unknown_name

#: The shipped table specs (package data, so they exist in any install).
TABLES_DIR = Path(__file__).resolve().parents[1] / "tables"
#: The FCN-score columns (Tables 1-3, and Table 6's first three).
METRICS = ("pixel", "class", "iou")
#: Our score JSON keys (``p2p_eval.metrics.fcn_score.score_folder``) for the FCN metric names.
SCORE_KEYS = {"pixel": "pixel_accuracy", "class": "class_accuracy", "iou": "class_iou"}
FCN_LABELS = {"pixel": "Per-pixel acc.", "class": "Per-class acc.", "iou": "Class IoU"}
#: How a table's rows are scored: FCN-score of generated photos, decoded generated label maps, image metrics.
KINDS = ("fcn", "labels", "image")
#: The data set a table trains on; ``--table all`` runs the Cityscapes tables.
DATA_KINDS = ("cityscapes", "facades")
TABLES = MappingProxyType({**{str(n): TABLES_DIR / f"table{n}.toml" for n in (1, 2, 3, 6)},
                           "modified": TABLES_DIR / "modified.toml", "blog": TABLES_DIR / "blog.toml"})


@dataclass(frozen=True)
class Metric:
    """One metric column: ``key`` (CSV / paper key), ``label``, ``score`` (key in the row's score JSON),
    ``higher_is_better``, ``digits``, ``rank`` (compared with the source's numbers; False: information only),
    ``optional`` (shown only when some row has it, e.g. LPIPS without weights), ``ci`` (has a 95% interval)."""

    key: str
    label: str
    score: str
    higher_is_better: bool = True
    digits: int = 3
    rank: bool = True
    optional: bool = False
    ci: bool = True


FCN_METRICS = tuple(Metric(m, FCN_LABELS[m], SCORE_KEYS[m]) for m in METRICS)


@dataclass(frozen=True)
class Row:
    """One row: its label in the paper, its generator variant, the source's numbers (metric key -> value)."""

    label: str
    generator: str
    paper: dict[str, float]

    @property
    def generator_file(self) -> Path:
        return GENERATORS_DIR / f"{self.generator}.toml"


@dataclass(frozen=True)
class TableSpec:
    """A table: id ("1", "modified"), file stem ("table1"), title, what varies, rows, ground-truth row (label
    None: no such row), how it is scored (``kind``), its data set, its metric columns, whose numbers
    ``paper`` holds (``paper_source``) and on what data and training they were made (``setting``)."""

    id: str
    name: str
    title: str
    varies: str
    rows: tuple[Row, ...]
    ground_truth_label: str | None
    ground_truth_paper: dict[str, float]
    ground_truth_source: str
    kind: str = "fcn"
    data: str = "cityscapes"
    metrics: tuple[Metric, ...] = FCN_METRICS
    paper_source: str = "the paper"
    setting: str = ""

    @property
    def ranked(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.rank)


def _scores(data: object, where: str) -> dict[str, float]:
    if not isinstance(data, dict) or set(data) != set(METRICS):
        raise UserError(f"{where}: paper must be {{pixel = x, class = y, iou = z}}, got {data!r}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UserError(f"{where}: paper.{key} must be a number in [0, 1], got {value!r}")
    return {key: float(data[key]) for key in METRICS}


def _partial_scores(data: object, metrics: tuple[Metric, ...], where: str) -> dict[str, float]:
    """A subset of the ranked metrics' numbers (image tables: the source printed some rows only)."""
    keys = {m.key for m in metrics if m.rank}
    if data is None:
        return {}
    if not isinstance(data, dict) or not set(data) <= keys:
        raise UserError(f"{where}: paper may hold only the ranked metrics {sorted(keys)}, got {data!r}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: paper.{key} must be a number, got {value!r}")
    return {m.key: float(data[m.key]) for m in metrics if m.key in data}


def _metrics(data: object, where: str) -> tuple[Metric, ...]:
    if not isinstance(data, list) or not data:
        raise UserError(f"{where}: [[metrics]] must list at least one metric (key, label)")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not {"key", "label"} <= set(item):
            raise UserError(f"{where} metrics[{i}]: a metric needs key and label")
        unknown = set(item) - {"key", "label", "score", "higher_is_better", "digits", "rank", "optional", "ci"}
        if unknown:
            raise UserError(f"{where} metrics[{i}]: unknown keys {sorted(unknown)}")
        out.append(Metric(str(item["key"]), str(item["label"]), str(item.get("score", item["key"])),
                          bool(item.get("higher_is_better", True)), int(item.get("digits", 3)),
                          bool(item.get("rank", True)), bool(item.get("optional", False)),
                          bool(item.get("ci", True))))
    if len({m.key for m in out}) != len(out):
        raise UserError(f"{where}: metric keys must be unique")
    return tuple(out)


def load_table(table: str, path: Path | None = None) -> TableSpec:
    """Parse table ``table`` ("1", "2", "3", "6", "modified") from its spec file (or ``path``); UserError names
    file and fix."""
    if path is None:
        if table not in TABLES:
            raise unknown_name("table", table, list(TABLES))
        path = TABLES[table]
    path = require_file(path, "table spec")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err}); fix the file") from None
    for key in ("name", "title", "rows"):
        if key not in data:
            raise UserError(f"{path}: missing key {key!r}; see {TABLES_DIR / 'table1.toml'} for the layout")
    kind, data_kind = str(data.get("kind", "fcn")), str(data.get("data", "cityscapes"))
    if kind not in KINDS:
        raise UserError(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if data_kind not in DATA_KINDS:
        raise UserError(f"{path}: data must be one of {', '.join(DATA_KINDS)}, got {data_kind!r}")
    metrics = _metrics(data["metrics"], str(path)) if "metrics" in data else FCN_METRICS
    if kind == "fcn" and metrics != FCN_METRICS:
        raise UserError(f"{path}: an FCN-score table has the three FCN-score columns; leave out [[metrics]]")
    if kind == "fcn" and "ground_truth" not in data:
        raise UserError(f"{path}: missing key 'ground_truth'; see {TABLES_DIR / 'table1.toml'} for the layout")

    def paper(value: Any, where: str) -> dict[str, float]:
        return _scores(value, where) if kind == "fcn" else _partial_scores(value, metrics, where)

    rows = []
    for i, row in enumerate(data["rows"]):
        where = f"{path} rows[{i}]"
        if not isinstance(row, dict) or not {"label", "generator", "paper"} <= set(row):
            raise UserError(f"{where}: a row needs label, generator and paper")
        spec = Row(str(row["label"]), str(row["generator"]), paper(row["paper"], where))
        if not spec.generator_file.is_file():
            raise UserError(f"{where}: no generator file {spec.generator_file}; valid names: "
                            f"{', '.join(generator_names())}")
        rows.append(spec)
    if not rows:
        raise UserError(f"{path}: a table needs at least one [[rows]] entry")
    gt = data.get("ground_truth")
    if gt is not None and not isinstance(gt, dict):
        raise UserError(f"{path}: [ground_truth] must be a table (label, paper)")
    return TableSpec(id=table, name=str(data["name"]), title=str(data["title"]), varies=str(data.get("varies", "")),
                     rows=tuple(rows), ground_truth_label=None if gt is None else str(gt.get("label", "Ground truth")),
                     ground_truth_paper={} if gt is None or (kind != "fcn" and "paper" not in gt)
                     else paper(gt.get("paper"), f"{path} ground_truth"),
                     ground_truth_source=str((gt or {}).get("paper_source", f"Table {table}")),
                     kind=kind, data=data_kind, metrics=metrics, paper_source=str(data.get("paper_source", "the paper")),
                     setting=str(data.get("setting", "")))


def _sort_key(table: str) -> tuple[int, int | str]:
    return (0, int(table)) if table.isdigit() else (1, table)


def parse_tables(selection: str | list[str]) -> list[str]:
    """``"all"`` / ``"1"`` / ``["1", "3"]`` / ``"1,6"`` / ``"modified"`` -> sorted unique table ids; unknown ids
    are a UserError. ``all`` is every Cityscapes table (1, 2, 3, 6); the Facades table (``modified``) trains on
    other data and is run on its own (``--table modified --data FACADES``)."""
    items = selection.split(",") if isinstance(selection, str) else [str(s) for s in selection]
    ids: list[str] = []
    for item in (s.strip() for s in items):
        chosen = all_tables() if item == "all" else [item]
        for t in chosen:
            if t not in TABLES:
                raise unknown_name("table", t, [*TABLES, "all"])
            if t not in ids:
                ids.append(t)
    return sorted(ids, key=_sort_key)


def all_tables(data: str = "cityscapes") -> list[str]:
    """The ids of the tables that train on ``data`` (what ``--table all`` means for Cityscapes)."""
    return [t for t in TABLES if load_table(t).data == data]
