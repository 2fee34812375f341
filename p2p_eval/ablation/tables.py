"""Tables 1-3 of pix2pix (Isola et al., CVPR 2017, sections 4.2-4.4) as data: ``p2p_eval/tables/*.toml``.

A spec names its rows by shipped generator variant (``p2p_eval/generators/<name>.toml``) and carries the
paper's three FCN-scores per row (per-pixel accuracy, per-class accuracy, class IoU) and the ground-truth row.
Both are package data, so the tables load from any install. :data:`TABLES` is the read-only
registry (table id -> spec file); :func:`load_table` parses and checks one spec.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from p2p_eval.config import GENERATORS_DIR, generator_names
from p2p_eval.errors import UserError, require_file, unknown_name

#: The shipped table specs (package data, so they exist in any install).
TABLES_DIR = Path(__file__).resolve().parents[1] / "tables"
METRICS = ("pixel", "class", "iou")
#: Our score JSON keys (``p2p_eval.metrics.fcn_score.score_folder``) for the spec's metric names.
SCORE_KEYS = {"pixel": "pixel_accuracy", "class": "class_accuracy", "iou": "class_iou"}
TABLES = MappingProxyType({str(n): TABLES_DIR / f"table{n}.toml" for n in (1, 2, 3)})


@dataclass(frozen=True)
class Row:
    """One row: its label in the paper, its generator variant, the paper's scores."""

    label: str
    generator: str
    paper: dict[str, float]

    @property
    def generator_file(self) -> Path:
        return GENERATORS_DIR / f"{self.generator}.toml"


@dataclass(frozen=True)
class TableSpec:
    """A table: id ("1"), file stem ("table1"), title, what varies, rows, ground-truth row."""

    id: str
    name: str
    title: str
    varies: str
    rows: tuple[Row, ...]
    ground_truth_label: str
    ground_truth_paper: dict[str, float]
    ground_truth_source: str


def _scores(data: object, where: str) -> dict[str, float]:
    if not isinstance(data, dict) or set(data) != set(METRICS):
        raise UserError(f"{where}: paper must be {{pixel = x, class = y, iou = z}}, got {data!r}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UserError(f"{where}: paper.{key} must be a number in [0, 1], got {value!r}")
    return {key: float(data[key]) for key in METRICS}


def load_table(table: str, path: Path | None = None) -> TableSpec:
    """Parse table ``table`` ("1", "2", "3") from its spec file (or ``path``); UserError names file and fix."""
    if path is None:
        if table not in TABLES:
            raise unknown_name("table", table, list(TABLES))
        path = TABLES[table]
    path = require_file(path, "table spec")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err}); fix the file") from None
    for key in ("name", "title", "rows", "ground_truth"):
        if key not in data:
            raise UserError(f"{path}: missing key {key!r}; see {TABLES_DIR / 'table1.toml'} for the layout")
    rows = []
    for i, row in enumerate(data["rows"]):
        where = f"{path} rows[{i}]"
        if not isinstance(row, dict) or not {"label", "generator", "paper"} <= set(row):
            raise UserError(f"{where}: a row needs label, generator and paper")
        spec = Row(str(row["label"]), str(row["generator"]), _scores(row["paper"], where))
        if not spec.generator_file.is_file():
            raise UserError(f"{where}: no generator file {spec.generator_file}; valid names: "
                            f"{', '.join(generator_names())}")
        rows.append(spec)
    if not rows:
        raise UserError(f"{path}: a table needs at least one [[rows]] entry")
    gt = data["ground_truth"]
    return TableSpec(id=table, name=str(data["name"]), title=str(data["title"]), varies=str(data.get("varies", "")),
                     rows=tuple(rows), ground_truth_label=str(gt.get("label", "Ground truth")),
                     ground_truth_paper=_scores(gt.get("paper"), f"{path} ground_truth"),
                     ground_truth_source=str(gt.get("paper_source", f"Table {table}")))


def parse_tables(selection: str | list[str]) -> list[str]:
    """``"all"`` / ``"1"`` / ``["1", "3"]`` / ``"1,3"`` -> sorted unique table ids; unknown ids are a UserError."""
    items = selection.split(",") if isinstance(selection, str) else [str(s) for s in selection]
    ids: list[str] = []
    for item in (s.strip() for s in items):
        chosen = list(TABLES) if item == "all" else [item]
        for t in chosen:
            if t not in TABLES:
                raise unknown_name("table", t, [*TABLES, "all"])
            if t not in ids:
                ids.append(t)
    return sorted(ids)
