"""API rules of the study server (FastAPI TestClient), on SQLite and PostgreSQL.

Expected values come from the rules themselves (which slot held the fake, read from the stored plan),
never from the server's own answers."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.study.models import Image, Session, Study, Trial
from p2p_eval.study.plan import draw_plan

STATIC = Path(__file__).resolve().parents[2] / "p2p_eval" / "study" / "static"


def start(client: Any, study: str = "s1", **ids: Any) -> dict[str, Any]:
    r = client.post(f"/api/studies/{study}/sessions", json=ids)
    assert r.status_code == 200, r.text
    return r.json()


def plan(client: Any, token: str) -> list[Trial]:
    with OrmSession(client.app.state.engine) as db:
        sid = db.scalar(select(Session.id).where(Session.token == token))
        return list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))


def answer(client: Any, token: str, index: int, value: str, **extra: Any) -> Any:
    client.get(f"/api/s/{token}/trial/{index}")
    return client.post(f"/api/s/{token}/answer", json={"index": index, "answer": value, **extra})


def test_full_session_scores_against_the_stored_plan(client, make_study) -> None:
    make_study(vigilance=1)
    state = start(client, workerId="W1", assignmentId="A1", hitId="H1")
    assert state["total"] == 2 + 4 + 1 and state["next_index"] == 0 and state["completion_code"] is None
    trials = plan(client, state["session"])
    assert len(trials) == 7, "the whole plan is stored before the first trial"
    assert [t.kind for t in trials[:2]] == ["practice"] * 2 and sum(t.kind == "vigilance" for t in trials) == 1
    for t in trials:  # answer "fake" correctly on even trials, wrongly on odd ones
        chosen = t.fake_slot if t.index % 2 == 0 else 3 - t.fake_slot
        trial = client.get(f"/api/s/{state['session']}/trial/{t.index}").json()
        assert len(trial["images"]) == 2 and trial["practice"] == (t.kind == "practice")
        for url in trial["images"]:
            img = client.get(url)
            assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"  # same processing: default
            assert img.headers["cache-control"] == "no-store"
        ack = client.post(f"/api/s/{state['session']}/answer",
                          json={"index": t.index, "answer": str(chosen), "onset1": 10.0, "offset1": 310.0,
                                "onset2": 10.0, "offset2": 310.0, "response_ms": 800.5}).json()
        assert ack["next_index"] == t.index + 1
        if t.kind == "practice":
            assert ack["feedback"] == {"correct": t.index % 2 == 0, "fake_slot": t.fake_slot}
        else:
            assert ack["feedback"] is None, "no feedback outside practice"
    assert ack["done"] and len(ack["completion_code"]) == 12
    stored = plan(client, state["session"])
    assert [t.correct for t in stored] == [t.index % 2 == 0 for t in stored]
    assert [t.judged_real for t in stored] == [t.index % 2 == 1 for t in stored]
    assert all(t.offset1 - t.onset1 == 300.0 and t.response_ms == 800.5 for t in stored)
    again = start(client, workerId="W1", assignmentId="A1", hitId="H1")
    assert again["done"] and again["completion_code"] == ack["completion_code"], "a reload after the end shows the code"


def test_question_real_flips_the_scoring(client, make_study) -> None:
    make_study(question="real", practice=0, trials=2)
    token = start(client)["session"]
    trials = plan(client, token)
    answer(client, token, 0, str(trials[0].fake_slot))  # picked the fake as the real one
    answer(client, token, 1, str(3 - trials[1].fake_slot))
    stored = plan(client, token)
    assert [(t.correct, t.judged_real) for t in stored] == [(False, True), (True, False)]


def test_plan_is_reproducible_and_paired(client, make_study) -> None:
    make_study(paired=True, trials=10, practice=2, vigilance=2)
    token = start(client, PROLIFIC_PID="P1", STUDY_ID="S", SESSION_ID="X")["session"]
    trials = plan(client, token)
    with OrmSession(client.app.state.engine) as db:
        session = db.scalar(select(Session).where(Session.token == token))
        study = db.get(Study, session.study_id)
        stems = {i.id: i.stem for i in db.scalars(select(Image))}
        algo = {i.id: i.algorithm_id for i in db.scalars(select(Image))}
        real = {i.stem: i.id for i in db.scalars(select(Image).where(Image.algorithm_id.is_(None)))}
        fake = {i.stem: i.id for i in db.scalars(select(Image).where(Image.algorithm_id == session.algorithm_id))}
        redrawn = draw_plan(study, real, fake, "prolific:P1")
    assert [(p.img1, p.img2, p.fake_slot, p.kind) for p in redrawn] == \
           [(t.img1_id, t.img2_id, t.fake_slot, t.kind) for t in trials]
    for t in trials:
        fake_id, real_id = (t.img1_id, t.img2_id) if t.fake_slot == 1 else (t.img2_id, t.img1_id)
        assert algo[fake_id] == session.algorithm_id and algo[real_id] is None
        if t.kind != "vigilance":
            assert stems[fake_id] == stems[real_id], "paired: real and fake of the same input"
    main = [t.fake_slot for t in trials if t.kind == "main"]
    assert sorted(main) == [1] * 5 + [2] * 5, "sides balanced"


def test_single_protocol_half_real_half_fake(client, make_study) -> None:
    make_study(protocol="single", trials=8, practice=2)
    token = start(client)["session"]
    trials = plan(client, token)
    assert all(t.img2_id is None for t in trials)
    assert sorted(t.fake_slot for t in trials if t.kind == "main") == [0] * 4 + [1] * 4
    assert len(client.get(f"/api/s/{token}/trial/0").json()["images"]) == 1
    truth = "fake" if trials[0].fake_slot else "real"
    ack = client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": truth}).json()
    assert ack["feedback"] == {"correct": True, "truth": truth}
    assert client.post(f"/api/s/{token}/answer", json={"index": 1, "answer": "1"}).status_code == 422


def test_preview_mode_gets_no_session(client, make_study) -> None:
    make_study()
    r = client.post("/api/studies/s1/sessions", json={"workerId": "W", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    assert r.status_code == 403
    with OrmSession(client.app.state.engine) as db:
        assert db.scalar(select(func.count(Session.id))) == 0


def test_client_learns_nothing_about_real_or_fake(client, make_study, image_dirs) -> None:
    make_study()
    info = client.get("/api/studies/s1").json()
    token = start(client)["session"]
    trial = client.get(f"/api/s/{token}/trial/0").json()
    text = repr(info) + repr(trial)
    for word in ("alg_a", "alg_b", "real", ".png", str(image_dirs["real"]), "fake_slot"):
        assert word not in text
    for url in trial["images"]:  # both images: JPEG re-encoded, same size, no file name anywhere
        r = client.get(url)
        assert r.headers["content-type"] == "image/jpeg" and "content-disposition" not in r.headers


def test_one_session_per_participant(client, make_study, db_url) -> None:
    make_study()
    first = start(client, workerId="W1", assignmentId="A1", hitId="H1")
    assert start(client, workerId="W1", assignmentId="A1", hitId="H1")["session"] == first["session"], "reload resumes"
    r = client.post("/api/studies/s1/sessions", json={"workerId": "W1", "assignmentId": "A2", "hitId": "H1"})
    assert r.status_code == 409, "a second assignment by the same worker is refused"
    p = start(client, PROLIFIC_PID="P1", STUDY_ID="S", SESSION_ID="X1")
    assert client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "P1", "SESSION_ID": "X2"}).status_code == 409
    anon = start(client)
    assert start(client, anon_id=anon["participant"])["session"] == anon["session"]
    assert len({first["session"], p["session"], anon["session"]}) == 3
    with OrmSession(client.app.state.engine) as db:  # the database itself refuses a duplicate participant
        s = db.scalar(select(Session).where(Session.token == first["session"]))
        dup = Session(study_id=s.study_id, algorithm_id=s.algorithm_id, participant=s.participant, source="mturk",
                      token=secrets.token_urlsafe(32), completion_code="X", total=1, next_index=0)
        db.add(dup)
        with pytest.raises(IntegrityError):
            db.commit()


def test_algorithms_balanced(client, make_study) -> None:
    make_study()
    for _ in range(7):
        start(client)
    with OrmSession(client.app.state.engine) as db:
        counts = sorted(db.execute(select(func.count()).select_from(Session).group_by(Session.algorithm_id)).scalars())
    assert counts == [3, 4]


def test_answer_twice_is_idempotent_and_a_change_is_refused(client, make_study) -> None:
    make_study()
    token = start(client)["session"]
    first = answer(client, token, 0, "1", response_ms=5.0)
    assert first.status_code == 200
    retry = client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1", "response_ms": 5.0})
    assert retry.status_code == 200 and retry.json() == first.json()
    assert answer(client, token, 1, "2").status_code == 200
    late_retry = client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"})
    assert late_retry.json() == first.json(), "the same ack even after later answers"
    assert client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "2"}).status_code == 409
    stored = plan(client, token)
    assert [t.answer for t in stored[:3]] == ["1", "2", None]
    assert client.get(f"/api/s/{token}/trial/0").status_code == 409, "answered trials are not shown again"


def test_skipping_ahead_is_refused(client, make_study) -> None:
    make_study()
    token = start(client)["session"]
    assert client.get(f"/api/s/{token}/trial/1").status_code == 409
    assert client.post(f"/api/s/{token}/answer", json={"index": 2, "answer": "1"}).status_code == 409
    assert client.post(f"/api/s/{token}/answer", json={"index": 99, "answer": "1"}).status_code == 404
    future = plan(client, token)[3]
    assert client.get(f"/api/s/{token}/img/{future.img1_token}").status_code == 404, "no peeking at later images"
    assert plan(client, token)[2].answer is None


def test_another_sessions_trials_and_images_are_out_of_reach(client, make_study) -> None:
    make_study()
    a, b = start(client)["session"], start(client)["session"]
    a_trial = plan(client, a)[0]
    assert client.get(f"/api/s/{b}/img/{a_trial.img1_token}").status_code == 404
    assert client.post(f"/api/s/{secrets.token_urlsafe(32)}/answer", json={"index": 0, "answer": "1"}).status_code == 404
    answer(client, b, 0, "1")
    assert plan(client, a)[0].answer is None, "answering in session b never touches session a"


def test_guessed_image_ids_are_404(client, make_study) -> None:
    make_study()
    token = start(client)["session"]
    with OrmSession(client.app.state.engine) as db:
        ids = list(db.scalars(select(Image.id)))
    for guess in [str(i) for i in ids[:5]] + [secrets.token_urlsafe(32) for _ in range(5)] + ["1.png", "real"]:
        assert client.get(f"/api/s/{token}/img/{guess}").status_code == 404


def test_path_traversal(client, make_study) -> None:
    make_study()
    token = start(client)["session"]
    for path in ["/static/../plan.py", "/static/%2e%2e/plan.py", "/static/..%2fplan.py", "/static/%2e%2e/%2e%2e/errors.py",
                 f"/api/s/{token}/img/..%2f..%2f..%2fetc%2fpasswd", f"/api/s/{token}/img/%2e%2e", "/static//etc/passwd",
                 "/s/..%2f..%2fetc%2fpasswd", "/static/../../../../etc/passwd"]:
        r = client.get(path)
        assert "root:" not in r.text and "def create_study" not in r.text and "UserError" not in r.text, path
        assert r.status_code in (200, 404), path  # /s/<anything> serves the participant page itself
    assert client.get("/static/study.js").status_code == 200


def test_admin_endpoints_need_the_token(client, make_study, image_dirs) -> None:
    _, token = make_study()
    for path in ("/api/admin/studies/s1/progress", "/api/admin/studies/s1/export", "/api/admin/studies/s1/export?format=json"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get(path, headers={"Authorization": token}).status_code == 401, "bearer scheme required"
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    spec = {"name": "s2", "real": str(image_dirs["real"]), "fake": {"x": str(image_dirs["alg_a"])}, "trials": 2, "practice": 0}
    assert client.post("/api/admin/studies", json=spec).status_code == 401
    assert client.post("/api/admin/studies", json=spec, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    made = client.post("/api/admin/studies", json=spec, headers={"Authorization": "Bearer server-secret"})
    assert made.status_code == 200 and made.json()["participant_path"] == "/s/s2"
    other = made.json()["admin_token"]
    assert client.get("/api/admin/studies/s1/progress", headers={"Authorization": f"Bearer {other}"}).status_code == 403
    dup = client.post("/api/admin/studies", json=spec, headers={"Authorization": "Bearer server-secret"})
    assert dup.status_code == 400 and "already exists" in dup.json()["detail"]


def test_progress_and_csv_export(client, make_study) -> None:
    _, admin = make_study()
    token = start(client, workerId="W<script>", assignmentId="A", hitId="H")["session"]
    answer(client, token, 0, "1", onset1=1.0, offset1=301.0, response_ms=9.0)
    auth = {"Authorization": f"Bearer {admin}"}
    progress = client.get("/api/admin/studies/s1/progress", headers=auth).json()
    assert progress["answers"] == 1 and sum(a["sessions"] for a in progress["algorithms"].values()) == 1
    csv = client.get("/api/admin/studies/s1/export", headers=auth)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert len(lines) == 1 + 6 and "mturk:W<script>" in lines[1]
    for column in ("image1_file", "fake_slot", "answer", "correct", "onset1", "response_ms", "practice", "vigilance",
                   "user_agent", "screen_w", "shown1_ms"):
        assert column in lines[0]


def test_bad_inputs_are_422(client, make_study) -> None:
    make_study()
    token = start(client)["session"]
    client.get(f"/api/s/{token}/trial/0")
    for body in ({"index": "0", "answer": "1"}, {"index": 0, "answer": 1}, {"index": 0, "answer": "left"},
                 {"index": 0, "answer": "1", "onset1": "soon"}, {"index": 0, "answer": "1", "response_ms": -1},
                 {"index": 0, "answer": "1", "offset1": True}):
        assert client.post(f"/api/s/{token}/answer", json=body).status_code == 422, body
    assert client.post(f"/api/s/{token}/answer", content=b"not json").status_code == 422
    assert client.post("/api/studies/s1/sessions", json={"workerId": "bad\nid"}).status_code == 422
    assert client.post("/api/studies/s1/sessions", json={"workerId": 5}).status_code == 422
    assert client.post("/api/studies/nope/sessions", json={}).status_code == 404
    assert plan(client, token)[0].answer is None


def test_pages_escape_user_strings(client, make_study) -> None:
    make_study()
    page = client.get("/s/s1")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text, "no inline script: the CSP forbids it"
    for name in ("study.js", "index.html"):
        text = (STATIC / name).read_text()
        assert "innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text


def test_redirect_url_gets_the_code(client, make_study) -> None:
    make_study(redirect_url="https://app.prolific.com/submissions/complete?cc={code}", trials=1, practice=0)
    token = start(client, PROLIFIC_PID="P", SESSION_ID="S")["session"]
    ack = answer(client, token, 0, "1").json()
    assert ack["redirect_url"] == f"https://app.prolific.com/submissions/complete?cc={ack['completion_code']}"


def test_oversized_and_deeply_nested_bodies_are_refused(client, make_study) -> None:
    make_study()
    state = start(client, workerId="W9")
    token = state["session"]
    big = b'{"index": 0, "answer": "1", "pad": "' + b"x" * 20_000 + b'"}'
    for url in ("/api/studies/s1/check", f"/api/s/{token}/answer"):
        assert client.post(url, content=big, headers={"content-type": "application/json"}).status_code == 413
    # a declared length past the limit is refused before any of the body is read
    r = client.post("/api/studies/s1/check", content=b"{}", headers={"content-length": "300000000"})
    assert r.status_code == 413
    deep = b"[" * 100_000 + b"]" * 100_000
    r = client.post(f"/api/s/{token}/answer", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 413  # 200 KB: past the limit
    deep = b"[" * 8_000 + b"]" * 8_000  # 16,000 bytes: under the limit, deeper than the JSON parser's stack
    r = client.post(f"/api/s/{token}/answer", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert answer(client, token, 0, "1").status_code == 200  # the session still works
