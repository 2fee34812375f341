"""What a lab needs to run and pay a study: who is excluded and why, the studies of a database and their
state, closing a study, and a new admin token.

Exclusion reasons of a session (:func:`participants`, joined by ";"; none: included): ``incomplete`` (never
reached the completion code); ``vigilance`` (more wrong vigilance trials than ``vigilance_max_errors``);
``timing`` (every answered test trial off its display time, :mod:`p2p_eval.study.timing`); ``unseen`` (every one
answered with its images never fetched); ``duplicate`` (the participant id, case and spaces aside, or the MTurk
assignment id of an earlier session).  ``study report --csv`` repeats them on each trial, for payments.
"""

from __future__ import annotations

import secrets
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select, update

from p2p_eval.errors import UserError
from p2p_eval.study.models import Algorithm, Session, Study, utcnow
from p2p_eval.study.plan import token_hash
from p2p_eval.study.service import is_full

REASONS = ("incomplete", "vigilance", "timing", "unseen", "duplicate")


def participants(frame: pd.DataFrame, vigilance_max_errors: int) -> pd.DataFrame:
    """One row per session (index ``session_id``): who, algorithm, completion code, completed, exclusion."""
    first = frame.groupby("session_id", sort=True).first()
    out = first[["participant", "source", "algorithm", "completion_code"]].copy()
    out["completed"] = first["completed_at"].notna()
    test = frame[(frame["kind"] == "main") & frame["answer"].notna()]

    def every(mask: pd.Series) -> pd.Series:
        return mask.groupby(test["session_id"]).all().reindex(out.index, fill_value=False).astype(bool)

    wrong = (frame["vigilance"] & frame["correct"].eq(False)).groupby(frame["session_id"]).sum()
    key = first["participant"].astype(str).str.strip().str.casefold()
    assignment = first["assignment_id"].where(first["source"] == "mturk")
    broken = {"incomplete": ~out["completed"],
              "vigilance": wrong.reindex(out.index, fill_value=0) > vigilance_max_errors,
              "timing": every(test["timing_ok"].eq(False).fillna(False).astype(bool)),
              "unseen": every(test["unseen"].astype(bool)),
              "duplicate": key.duplicated() | (assignment.notna() & assignment.duplicated())}
    out["exclusion_reason"] = pd.Series([";".join(r for r in REASONS if broken[r][sid]) for sid in out.index],
                                        index=out.index, dtype=object)
    out["excluded"] = out["exclusion_reason"] != ""
    return out


def format_excluded(report: dict[str, Any]) -> list[str]:
    """Lines of the text report naming every excluded participant (for payments: who completed, who did not)."""
    people = [p for p in report.get("participants", []) if p["excluded"]]
    lines = [f"excluded participants: {len(people)}" + (" (participant | algorithm | completion code | completed | "
                                                          "why)" if people else "")]
    lines += [f"  {p['participant']} | {p['algorithm']} | {p['completion_code']} | "
              f"{'yes' if p['completed'] else 'no'} | {p['exclusion_reason']}" for p in people]
    return lines


def _study(conn: Any, name: str) -> Any:
    if (row := conn.execute(select(Study.id).where(Study.name == name)).first()) is None:
        names = conn.scalars(select(Study.name).order_by(Study.id)).all()
        raise UserError(f"--study {name!r}: no such study in this database; studies: {', '.join(names) or 'none'}")
    return row


def list_studies(engine: Engine) -> list[dict[str, Any]]:
    """Every study: name, protocol, sessions (participants), completed sessions, cap per algorithm and state
    (closed, full as the server decides, or open)."""
    per = (select(Algorithm.study_id, Algorithm.id, func.count(Session.id), func.count(Session.completed_at))
           .join(Session, Session.algorithm_id == Algorithm.id, isouter=True).group_by(Algorithm.study_id, Algorithm.id))
    with engine.begin() as conn:
        studies = conn.execute(select(Study.id, Study.name, Study.protocol, Study.max_participants, Study.closed_at)
                               .order_by(Study.id)).all()
        counts = conn.execute(per).all()
    out = []
    for s in studies:
        mine = {alg: (n, done) for study_id, alg, n, done in counts if study_id == s.id}
        full = is_full({a: n for a, (n, _) in mine.items()}, mine, s.max_participants)
        out.append({"name": s.name, "protocol": s.protocol, "participants": sum(n for n, _ in mine.values()),
                    "completed": sum(d for _, d in mine.values()), "max_participants": s.max_participants,
                    "state": "closed" if s.closed_at is not None else "full" if full else "open"})
    return out


def close_study(engine: Engine, name: str) -> bool:
    """Close study ``name`` to new arrivals (sessions already started go on); False when it was closed already."""
    with engine.begin() as conn:
        study = _study(conn, name)
        return bool(conn.execute(update(Study).where(Study.id == study.id, Study.closed_at.is_(None))
                                 .values(closed_at=utcnow())).rowcount)


def new_admin_token(engine: Engine, name: str) -> str:
    """A new admin token for study ``name`` (its hash replaces the old one, which stops working at once)."""
    token = secrets.token_urlsafe(24)
    with engine.begin() as conn:
        study = _study(conn, name)
        conn.execute(update(Study).where(Study.id == study.id).values(token_sha256=token_hash(token)))
    return token
