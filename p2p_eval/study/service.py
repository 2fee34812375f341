"""Sessions, trials and answers: the rules the server enforces.

- one session per participant per study (unique constraint); a reload (same ids) resumes it;
- each session tests the algorithm with the fewest sessions so far; a closed study, or one where every
  algorithm has ``max_participants`` sessions, refuses new arrivals (410, ``reason`` "closed" / "full");
  a study with a consent text opens a session only with ``consent: true``;
- the plan is stored before the first trial; trials are served and answered strictly in order;
- an answer is idempotent; the "next trial" counter advances by compare-and-swap (no double store);
- images are reached only through per-trial random tokens while their trial is open; every request is counted;
- a trial whose image the server cannot serve is skipped, its reason stored;
- ``hype-time``: a test trial's exposure is chosen from its staircase's stored answers when the trial is first
  opened (:func:`p2p_eval.study.hype.next_exposure`), and stored.

Every function takes a SQLAlchemy Core connection in the request's transaction and a :class:`Catalog`.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from p2p_eval.study.hype import HypeTimeParams, next_exposure
from p2p_eval.study.images import Processing
from p2p_eval.study.models import Algorithm, Image, Session, Study, Trial, utcnow
from p2p_eval.study.plan import SINGLE_IMAGE, draw_plan, processing_of

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
ID_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class Rejected(Exception):
    """A request the rules refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


@dataclass
class Arrival:
    """The URL parameters a participant arrives with, plus browser facts."""

    workerId: str | None = None  # noqa: N815 - MTurk's spelling
    assignmentId: str | None = None  # noqa: N815
    hitId: str | None = None  # noqa: N815
    PROLIFIC_PID: str | None = None  # noqa: N815
    STUDY_ID: str | None = None  # noqa: N815
    SESSION_ID: str | None = None  # noqa: N815
    anon_id: str | None = None
    user_agent: str | None = None
    screen_w: int | None = None
    screen_h: int | None = None
    consent: bool = False  # the participant agreed to the study's consent text

    def identity(self) -> tuple[str, str, str]:
        """(source, participant key, shown id); raises Rejected for a preview or a malformed id."""
        for value in (self.workerId, self.assignmentId, self.hitId, self.PROLIFIC_PID, self.STUDY_ID, self.SESSION_ID,
                      self.anon_id):
            if value is not None and not ID_RE.match(value):
                raise Rejected(422, "participant ids must be 1-128 printable characters")
        if self.assignmentId == MTURK_PREVIEW:
            raise Rejected(403, "preview mode: accept the HIT to start the study")
        if self.workerId:
            return "mturk", f"mturk:{self.workerId}", self.workerId
        if self.PROLIFIC_PID:
            return "prolific", f"prolific:{self.PROLIFIC_PID}", self.PROLIFIC_PID
        anon = self.anon_id or secrets.token_urlsafe(12)
        return "anon", f"anon:{anon}", anon


def _state(study: StudyView, s: Any, shown_id: str, resumed: bool = False) -> dict[str, Any]:
    done = s.next_index >= s.total
    return {"session": s.token, "participant": shown_id, "source": s.source, "protocol": study.protocol,
            "question": study.question, "display_ms": study.display_ms, "practice": study.practice, "total": s.total,
            "next_index": s.next_index, "done": done, "resumed": resumed and 0 < s.next_index < s.total,
            "completion_code": s.completion_code if done else None, "answer_ms": study.answer_ms,
            "redirect_url": study.redirect(s.completion_code) if done else None}


def _resume(study: StudyView, s: Any, arrival: Arrival, shown: str) -> dict[str, Any]:
    """A reload resumes; a new assignment / Prolific session by the same participant is refused."""
    if (s.source == "mturk" and s.assignment_id != arrival.assignmentId) or \
            (s.source == "prolific" and s.external_session_id != arrival.SESSION_ID):
        raise Rejected(409, "you have already taken part in this study (one session per participant)")
    return _state(study, s, shown, resumed=True)


def _plan_rows(session_id: int, plan: list[Any]) -> list[dict[str, Any]]:
    """The trial rows of a session's plan, each image with a fresh random token."""
    return [{"session_id": session_id, "index": i, "kind": t.kind, "img1_id": t.img1,
             "img1_token": secrets.token_urlsafe(32), "img2_id": t.img2,
             "img2_token": secrets.token_urlsafe(32) if t.img2 is not None else None,
             "fake_slot": t.fake_slot, "broken": t.broken, "staircase": t.staircase} for i, t in enumerate(plan)]


@dataclass
class TrialFiles:
    """The files behind the next trial's images, for the server to render before it opens the trial."""
    index: int
    files: list[tuple[Path, bool]]  # (file, broken?) per slot
    processing: Processing


def _score(study: StudyView, trial: Any, answer: str) -> tuple[bool, bool]:
    """(correct, judged_real: the fake judged real / single-image: labelled real); "missed" is wrong, not real."""
    if answer == "missed":
        return False, False
    if study.protocol in SINGLE_IMAGE:
        judged_real = answer == "real"
        return judged_real != bool(trial.fake_slot), judged_real
    chose_fake = int(answer) == trial.fake_slot
    judged_real = chose_fake if study.question == "real" else not chose_fake
    return not judged_real, judged_real


def _timing(payload: dict[str, Any], key: str) -> float | None:
    if (value := payload.get(key)) is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Rejected(422, f"{key} must be a number of milliseconds: any finite number >= 0 (got {value!r})")
    return float(value)


_S, _T, _I = Session.__table__, Trial.__table__, Image.__table__
_SESSION = select(_S.c.id, _S.c.study_id, _S.c.next_index, _S.c.total, _S.c.completion_code)
_TRIAL = select(_T.c.id, _T.c.index, _T.c.kind, _T.c.img1_id, _T.c.img1_token, _T.c.img2_id, _T.c.img2_token,
                _T.c.fake_slot, _T.c.broken, _T.c.views, _T.c.answer, _T.c.correct, _T.c.skip_reason,
                _T.c.exposure_ms, _T.c.staircase, _T.c.session_id)
_TIMES = ("onset1", "offset1", "onset2", "offset2", "response_ms", "frame_ms", "mask_onset", "mask_offset")
# statements built once (their SQL and cache keys are then computed once per process)
_SESSION_EXISTS = select(_S.c.id).where(_S.c.token == bindparam("token"))
_SESSION_TRIAL = (select(*(c.label(f"s_{c.name}") for c in _SESSION.selected_columns), *_TRIAL.selected_columns)
                  .select_from(_S.outerjoin(_T, (_T.c.session_id == _S.c.id) & (_T.c.index == bindparam("idx"))))
                  .where(_S.c.token == bindparam("token")))
_BY_TID = _T.c.id == bindparam("tid")
_TRIAL_BY_ID = _TRIAL.where(_BY_TID)
_OPEN_IMAGE = (_TRIAL.add_columns(_S.c.study_id).join(_S, _T.c.session_id == _S.c.id)
               .where(_S.c.token == bindparam("token"), _T.c.index == _S.c.next_index,
                      or_(_T.c.img1_token == bindparam("itok"), _T.c.img2_token == bindparam("itok"))))
_IMAGE = select(_I.c.path, _I.c.algorithm_id).where(_I.c.id == bindparam("iid"))
_STUDY_ID = select(Study.__table__.c.id).where(Study.__table__.c.name == bindparam("name"))
_PARTICIPANT = select(_S).where(_S.c.study_id == bindparam("sid"), _S.c.participant == bindparam("participant"))
_CLOSED = select(Study.__table__.c.closed_at).where(Study.__table__.c.id == bindparam("sid"))
_LOCK_STUDY = select(Study.__table__.c.id).where(Study.__table__.c.id == bindparam("sid")).with_for_update()
_PER_ALGORITHM = select(_S.c.algorithm_id, func.count()).where(_S.c.study_id == bindparam("sid")).group_by(
    _S.c.algorithm_id)
_VIEWED = update(_T).where(_BY_TID).values(views=_T.c.views + 1)
_VIEWED_AT = update(_T).where(_BY_TID).values(views=_T.c.views + 1, exposure_ms=bindparam("b_exposure"))
_FETCHED = {1: update(_T).where(_BY_TID).values(fetches1=_T.c.fetches1 + 1),
            2: update(_T).where(_BY_TID).values(fetches2=_T.c.fetches2 + 1)}
_ADVANCE = (update(_S).where(_S.c.id == bindparam("sid"), _S.c.next_index == bindparam("idx"))
            .values(next_index=bindparam("b_next"), completed_at=bindparam("b_completed")))
_STORE = update(_T).where(_BY_TID).values(
    answer=bindparam("b_answer"), correct=bindparam("b_correct"), judged_real=bindparam("b_judged_real"),
    answered_at=bindparam("b_answered_at"), **{k: bindparam(f"b_{k}") for k in _TIMES})
_SKIPPED = update(_T).where(_BY_TID).values(skip_reason=bindparam("b_reason"))


class StudyView(SimpleNamespace):
    """A study's columns plus ``processing``, ``hype`` (hype-time) and ``folders`` (algorithm id -> folder)."""

    def redirect(self, code: str) -> str | None:
        return self.redirect_url.replace("{code}", code) if self.redirect_url else None


class Catalog:
    """Per-process cache of studies and image files by id (None: the path left its registered folder: 404)."""

    def __init__(self) -> None:
        self.studies: dict[int, StudyView] = {}
        self.names: dict[str, int] = {}
        self.images: dict[int, Path | None] = {}

    def study(self, conn: Any, study_id: int) -> StudyView:
        if study_id not in self.studies:
            row = conn.execute(select(Study.__table__).where(Study.id == study_id)).one()
            folders = select(Algorithm.id, Algorithm.folder).where(Algorithm.study_id == study_id)
            hype = HypeTimeParams.from_json(row.protocol_params) if row.protocol == "hype-time" else None
            self.studies[study_id] = StudyView(**row._asdict(), processing=processing_of(row), hype=hype,
                                               folders=dict(conn.execute(folders).all()))
        return self.studies[study_id]

    def study_named(self, conn: Any, name: str) -> StudyView:
        """The study called ``name``; Rejected (404) when there is none."""
        if name not in self.names:
            if (study_id := conn.execute(_STUDY_ID, {"name": name}).scalar()) is None:
                raise Rejected(404, "no such study")
            self.names[name] = study_id
        return self.study(conn, self.names[name])

    def file(self, conn: Any, study: StudyView, trial: Any, slot: int) -> tuple[Path, bool]:
        """(file, broken?) of image ``slot`` of ``trial``."""
        image_id = trial.img1_id if slot == 1 else trial.img2_id
        if image_id not in self.images:
            row = conn.execute(_IMAGE, {"iid": image_id}).one()
            folder = study.real_dir if row.algorithm_id is None else study.folders[row.algorithm_id]
            path = Path(row.path).resolve()
            self.images[image_id] = path if path.is_relative_to(Path(folder).resolve()) else None
        if self.images[image_id] is None:
            raise Rejected(404, "no such image")
        return self.images[image_id], bool(trial.broken) and slot == trial.fake_slot


def _session_and_trial(conn: Any, token: str, index: int) -> tuple[Any, Any]:
    """The session of ``token`` and its trial ``index`` (None when it has none), in one statement."""
    in_range = -2**31 <= index < 2**31  # beyond any trial, and beyond what the databases' INTEGER holds
    if (row := conn.execute(_SESSION_TRIAL, {"token": token, "idx": index if in_range else -1}).first()) is None:
        raise Rejected(404, "no such session")
    s = SimpleNamespace(id=row.s_id, study_id=row.s_study_id, next_index=row.s_next_index, total=row.s_total,
                        completion_code=row.s_completion_code)
    return s, (row if row.id is not None else None)


def _next_row(conn: Any, token: str, index: int) -> tuple[Any, Any]:
    s, trial = _session_and_trial(conn, token, index)
    if index != s.next_index:
        raise Rejected(409, f"trial {index} is not the next trial (expected {s.next_index})")
    if trial is None:
        raise Rejected(404, "no such trial (the session is complete)")
    return s, trial


def open_trial(conn: Any, catalog: Catalog, token: str, index: int,
               ready: Callable[[Path, bool, Processing], bool]) -> dict[str, Any] | TrialFiles:
    """Open the next unanswered trial: its image URLs and how long to show them (``hype-inf``: None, until the
    answer; ``hype-time``: its exposure and ``mask_ms``).  When ``ready(file, broken, processing)`` fails for an
    image, nothing is written and the :class:`TrialFiles` are returned, to render and ask again."""
    s, trial = _next_row(conn, token, index)
    study = catalog.study(conn, s.study_id)
    slots = [1, 2] if trial.img2_id is not None else [1]
    files = [catalog.file(conn, study, trial, slot) for slot in slots]
    if not all(ready(path, broken, study.processing) for path, broken in files):
        return TrialFiles(index, files, study.processing)
    display, mask = (None if study.protocol == "hype-inf" else study.display_ms), 0
    if study.protocol == "hype-time" and trial.exposure_ms is None:
        display, mask = _exposure(conn, study.hype, trial), study.hype.mask_ms
        conn.execute(_VIEWED_AT, {"tid": trial.id, "b_exposure": display})
    else:
        conn.execute(_VIEWED, {"tid": trial.id})
        if study.protocol == "hype-time":
            display, mask = trial.exposure_ms, study.hype.mask_ms
    tokens = [t for t in (trial.img1_token, trial.img2_token) if t is not None]
    return {"index": index, "practice": trial.kind == "practice", "total": s.total, "done": False,
            "images": [f"/api/s/{token}/img/{t}" for t in tokens], "display_ms": display, "mask_ms": mask}


def _exposure(conn: Any, params: HypeTimeParams, trial: Any) -> int:
    """A ``hype-time`` trial's exposure: practice at the start, vigilance at the longest, a test trial's from its
    staircase's answers before it."""
    if trial.kind == "practice":
        return params.start_ms
    if trial.kind != "main" or trial.staircase is None:
        return params.exposures_ms[-1]
    answers = conn.scalars(select(_T.c.correct).where(
        _T.c.session_id == trial.session_id, _T.c.staircase == trial.staircase, _T.c.kind == "main",
        _T.c.index < trial.index, _T.c.answer.is_not(None)).order_by(_T.c.index)).all()
    return next_exposure(params, [bool(c) for c in answers])


def fetch_image(conn: Any, catalog: Catalog, token: str, image_token: str) -> tuple[Path, bool, Processing]:
    """(file, broken?, processing) of an image of the caller's open trial, counted; 404 for anything else."""
    row = conn.execute(_OPEN_IMAGE, {"token": token, "itok": image_token}).first()
    if row is None or row.answer is not None or row.skip_reason is not None or not row.views:
        if row is None and conn.execute(_SESSION_EXISTS, {"token": token}).first() is None:
            raise Rejected(404, "no such session")
        raise Rejected(404, "no such image (images are served only while their trial is open)")
    study = catalog.study(conn, row.study_id)
    slot = 1 if row.img1_token == image_token else 2
    path, broken = catalog.file(conn, study, row, slot)
    conn.execute(_FETCHED[slot], {"tid": row.id})
    return path, broken, study.processing


def _advance(conn: Any, s: Any, index: int) -> int:
    """Move session ``s`` past trial ``index`` if it is still there (compare-and-swap); the rows changed."""
    done = {"b_completed": utcnow() if index + 1 >= s.total else None}
    return conn.execute(_ADVANCE, {"sid": s.id, "idx": index, "b_next": index + 1, **done}).rowcount


def _ack_row(study: StudyView, s: Any, trial: Any, value: str, correct: bool | None) -> dict[str, Any]:
    """The acknowledgement of an answered trial; a pure function of stored data (same on every retry)."""
    done = trial.index + 1 >= s.total
    ack: dict[str, Any] = {"index": trial.index, "answer": value, "accepted": True,
                           "next_index": trial.index + 1, "done": done, "feedback": None,
                           "completion_code": s.completion_code if done else None,
                           "redirect_url": study.redirect(s.completion_code) if done else None}
    if trial.kind == "practice":
        single = study.protocol in SINGLE_IMAGE
        truth = ("fake" if trial.fake_slot else "real") if single else trial.fake_slot
        ack["feedback"] = {"correct": correct, "truth" if single else "fake_slot": truth}
    return ack


def store_answer(conn: Any, catalog: Catalog, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Store the answer to the next trial; idempotent for the same answer, 409 for anything out of turn."""
    index, value = payload.get("index"), payload.get("answer")
    valid_index = isinstance(index, int) and not isinstance(index, bool)
    s, trial = _session_and_trial(conn, token, index if valid_index else -1)
    study = catalog.study(conn, s.study_id)
    if not valid_index:
        raise Rejected(422, "index must be an integer")
    valid = (("real", "fake") if study.protocol in SINGLE_IMAGE else ("1", "2")) + (("missed",) if study.answer_ms else ())
    if not isinstance(value, str) or value not in valid:
        raise Rejected(422, f"answer must be one of {', '.join(valid)}")
    if trial is None:
        raise Rejected(404, "no such trial")
    if trial.answer is not None:
        if trial.answer != value:
            raise Rejected(409, f"trial {index} was already answered differently")
        return _ack_row(study, s, trial, trial.answer, trial.correct)
    if index != s.next_index:
        raise Rejected(409, f"trial {index} is not the next trial (expected {s.next_index})")
    if study.protocol == "hype-time" and trial.exposure_ms is None:
        raise Rejected(409, f"trial {index} has not been opened (fetch it first: its exposure is chosen then)")
    times = {k: _timing(payload, k) for k in _TIMES}
    if _advance(conn, s, index) != 1:  # a concurrent request for the same trial won the race and has committed
        trial = conn.execute(_TRIAL_BY_ID, {"tid": trial.id}).one()
        if trial.answer == value:
            return _ack_row(study, s, trial, trial.answer, trial.correct)
        raise Rejected(409, f"trial {index} was already answered differently")
    correct, judged_real = _score(study, trial, value)
    conn.execute(_STORE, {"tid": trial.id, "b_answer": value, "b_correct": correct, "b_judged_real": judged_real,
                          "b_answered_at": utcnow(), **{f"b_{k}": t for k, t in times.items()}})
    return _ack_row(study, s, trial, value, correct)


def is_full(counts: dict[int, int], algorithms: Any, cap: int | None) -> bool:
    """Every algorithm id in ``algorithms`` has ``cap`` sessions in ``counts`` (never without a cap)."""
    return cap is not None and all(counts.get(a, 0) >= cap for a in algorithms)


def _admit(conn: Any, study: StudyView) -> dict[int, int]:
    """Sessions per algorithm id, for a new arrival; Rejected (410) when the study is closed or full."""
    if conn.execute(_CLOSED, {"sid": study.id}).scalar() is not None:
        raise Rejected(410, "this study is closed: it takes no new participants", "closed")
    counts = dict(conn.execute(_PER_ALGORITHM, {"sid": study.id}).all())
    if is_full(counts, study.folders, study.max_participants):
        raise Rejected(410, "this study is full: it has all the participants it needs", "full")
    return counts


def check_arrival(conn: Any, catalog: Catalog, name: str, arrival: Arrival) -> dict[str, Any]:
    """Before the instructions (creates nothing): ``{"status": "new"}``, or ``"resume"`` / ``"done"`` with the
    progress of the participant's session; Rejected (409) for a second session of the same participant."""
    _, participant, shown = arrival.identity()
    study = catalog.study_named(conn, name)
    known = arrival.anon_id is not None or arrival.workerId or arrival.PROLIFIC_PID  # else a new anonymous id
    existing = conn.execute(_PARTICIPANT, {"sid": study.id, "participant": participant}).first() if known else None
    if existing is None:
        _admit(conn, study)
        return {"status": "new"}
    state = _resume(study, existing, arrival, shown)
    return {"status": "done" if state["done"] else "resume", "next_index": state["next_index"],
            "total": state["total"], "practice": study.practice}


def open_session(conn: Any, catalog: Catalog, name: str, arrival: Arrival) -> dict[str, Any]:
    """Create the participant's session (the algorithm with the fewest sessions) and its plan, or resume it."""
    source, participant, shown = arrival.identity()
    study = catalog.study_named(conn, name)
    key = {"sid": study.id, "participant": participant}
    if (existing := conn.execute(_PARTICIPANT, key).first()) is not None:
        return _resume(study, existing, arrival, shown)
    if study.consent and arrival.consent is not True:
        raise Rejected(422, "this study asks for consent first: send consent: true once the participant agreed")
    conn.execute(_LOCK_STUDY, {"sid": study.id})  # serialise assignment (PostgreSQL)
    counts = _admit(conn, study)
    algorithm = min(study.folders, key=lambda a: (counts.get(a, 0), a))  # below the cap: the study is not full
    real, fake = (dict(conn.execute(select(_I.c.stem, _I.c.id).where(_I.c.study_id == study.id, where)).all())
                  for where in (_I.c.algorithm_id.is_(None), _I.c.algorithm_id == algorithm))
    plan = draw_plan(study, real, fake, participant)
    row = {"study_id": study.id, "algorithm_id": algorithm, "participant": participant, "source": source,
           "assignment_id": arrival.assignmentId, "hit_id": arrival.hitId, "external_study_id": arrival.STUDY_ID,
           "external_session_id": arrival.SESSION_ID, "token": secrets.token_urlsafe(32),
           "completion_code": secrets.token_hex(6).upper(), "total": len(plan), "next_index": 0,
           "user_agent": (arrival.user_agent or "")[:500] or None, "screen_w": arrival.screen_w,
           "screen_h": arrival.screen_h}
    try:
        with conn.begin_nested():
            session_id = conn.execute(insert(_S).values(**row)).inserted_primary_key[0]
            conn.execute(insert(_T), _plan_rows(session_id, plan))
    except IntegrityError:  # the same participant arrived twice at once: the other request won
        if (existing := conn.execute(_PARTICIPANT, key).first()) is None:
            raise
        return _resume(study, existing, arrival, shown)
    return _state(study, SimpleNamespace(**row), shown)


def study_info(conn: Any, catalog: Catalog, name: str) -> dict[str, Any]:
    """What the participant page needs before a session exists (no algorithm names)."""
    study = catalog.study_named(conn, name)
    return {"name": study.name, "protocol": study.protocol, "question": study.question,
            "display_ms": study.display_ms, "mask_ms": study.hype.mask_ms if study.hype else 0,
            "practice": study.practice, "total": study.practice + study.trials + study.vigilance,
            "consent": study.consent, "instructions": study.instructions, "answer_ms": study.answer_ms}


def skip_trial(conn: Any, catalog: Catalog, token: str, index: int, reason: str) -> dict[str, Any]:
    """Skip the next trial (the server cannot serve one of its images), store why; return the new position."""
    s, trial = _next_row(conn, token, index)
    study = catalog.study(conn, s.study_id)
    done = index + 1 >= s.total
    if _advance(conn, s, index) != 1:  # a concurrent request moved on first
        raise Rejected(409, f"trial {index} is not the next trial any more")
    conn.execute(_SKIPPED, {"tid": trial.id, "b_reason": reason[:1000]})
    return {"index": index, "skipped": True, "next_index": index + 1, "total": s.total, "done": done,
            "completion_code": s.completion_code if done else None,
            "redirect_url": study.redirect(s.completion_code) if done else None}
