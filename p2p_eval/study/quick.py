"""``p2p-eval study quick``: the quick-response test of "Evaluating the Capability of Pix2Pix in Producing
Synthetic Images" (its Table I) for one assessor on their own machine.

``count`` real and ``count`` generated images are shown once each in a random order (the ``single``
protocol), each for ``display_ms``, then ``answer_ms`` to answer ("missed" after it, counted as wrong).  The
session is an ordinary study in an SQLite database in a temporary folder (deleted at the end, Ctrl-C included),
served on 127.0.0.1; it ends on ``/quick/results``: correct identifications per group and, per image shown, its
label map (``--labels``), ground truth and prediction (same file name) with the assessor's answer.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import Engine, select

from p2p_eval.errors import UserError
from p2p_eval.study.models import Image, Session, Trial
from p2p_eval.study.plan import StudySpec, create_study, list_folder

NAME = "quick"
GROUPS = ("real", "generated")


@dataclasses.dataclass
class QuickOptions:
    """The command's settings (see ``p2p-eval study quick --help``)."""
    real: Path
    images: Path
    labels: Path | None = None
    count: int = 25
    answer_ms: int = 3000
    display_ms: int = 3000
    seed: int | None = None


def create(engine: Engine, opts: QuickOptions, base_url: str) -> None:
    """The quick study in ``engine``, ending on the results page."""
    for folder, what in ((opts.real, "--real"), (opts.images, "--images")):
        if (found := len(list_folder(folder, f"{what} folder"))) < opts.count:
            raise UserError(f"{what} {folder}: {found} images, fewer than --count {opts.count}; lower --count")
    seed = opts.seed if opts.seed is not None else secrets.randbits(31)
    create_study(engine, StudySpec(name=NAME, real=str(opts.real), fake={"generated": str(opts.images)},
                                   protocol="single", trials=2 * opts.count, practice=0, display_ms=opts.display_ms,
                                   answer_ms=opts.answer_ms, seed=seed, redirect_url=f"{base_url}/quick/results"))


def results(engine: Engine) -> dict[str, Any] | None:
    """The finished session's results (None while it runs): correct per group, and per trial stem, group, answer."""
    with engine.begin() as conn:
        session = conn.execute(select(Session.id, Session.completed_at)).first()
        if session is None or session.completed_at is None:
            return None
        rows = conn.execute(select(Trial.index, Trial.fake_slot, Trial.answer, Trial.correct, Image.stem)
                            .join(Image, Image.id == Trial.img1_id).where(Trial.session_id == session.id)
                            .order_by(Trial.index)).all()
    trials = [{"index": r.index + 1, "stem": r.stem, "group": GROUPS[r.fake_slot], "answer": r.answer,
               "correct": bool(r.correct)} for r in rows]
    counts = {g: {"correct": sum(t["correct"] for t in trials if t["group"] == g),
                  "shown": sum(t["group"] == g for t in trials)} for g in GROUPS}
    return {"counts": counts, "missed": sum(t["answer"] == "missed" for t in trials), "trials": trials}


def format_results(found: dict[str, Any]) -> str:
    c = found["counts"]
    return (f"correct identifications: real {c['real']['correct']} of {c['real']['shown']}, generated "
            f"{c['generated']['correct']} of {c['generated']['shown']} ({found['missed']} missed answers, counted as "
            "wrong)")


def _find(folder: Path | None, stem: str) -> Path | None:
    """The image file called ``stem`` (any image suffix) directly inside ``folder``."""
    files = sorted(folder.iterdir()) if folder is not None else []
    return next((p for p in files if p.stem == stem and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp")),
                None)


def add_routes(app: FastAPI, engine: Engine, opts: QuickOptions) -> None:
    """``/quick/results`` (the page) and ``/quick/file/{real|generated|label}/{stem}`` (its files, shown stems only)."""
    folders = {"real": opts.real, "generated": opts.images, "label": opts.labels}

    @app.get("/quick/file/{kind}/{stem}", include_in_schema=False)
    def file(kind: str, stem: str) -> Response:
        found = results(engine)
        path = _find(folders.get(kind), stem) if found and stem in {t["stem"] for t in found["trials"]} else None
        return FileResponse(path) if path is not None else Response("not found", status_code=404)

    @app.get("/quick/results", include_in_schema=False)
    def page() -> Response:
        if (found := results(engine)) is None:
            return HTMLResponse("<p>The session is not finished yet.</p>", status_code=409)
        return HTMLResponse(_page(found, {k: v is not None for k, v in folders.items()}))


def _page(found: dict[str, Any], have: dict[str, bool]) -> str:
    """The results page (every string escaped; no script)."""
    def cell(kind: str, stem: str) -> str:
        return f'<td><img src="/quick/file/{kind}/{html.escape(stem)}" alt="{kind}" width="128"></td>' \
            if have[kind] else "<td>-</td>"

    rows = "".join(
        f"<tr><td>{t['index']}</td>{cell('label', t['stem'])}{cell('real', t['stem'])}{cell('generated', t['stem'])}"
        f"<td>{t['group']}</td><td>{html.escape(str(t['answer']))}</td><td>{'yes' if t['correct'] else 'no'}</td>"
        f"</tr>" for t in found["trials"])
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Quick test: results</title>"
            "<link rel=\"stylesheet\" href=\"/static/study.css\"></head><body><main><h1>Results</h1>"
            f"<p id=\"summary\">{html.escape(format_results(found))}</p>"
            "<table id=\"results\"><tr><th>#</th><th>label map</th><th>ground truth</th><th>prediction</th>"
            f"<th>shown</th><th>your answer</th><th>correct</th></tr>{rows}</table>"
            "<p>You can close this page; press Ctrl-C in the terminal to end the test.</p></main></body></html>")


def temporary_folder() -> tempfile.TemporaryDirectory:
    """Where the session's database lives while the command runs (deleted at the end)."""
    return tempfile.TemporaryDirectory(prefix="p2p-quick-")
