"""A study a lab can run and pay from: answers to images never fetched, who is excluded and why (in the report
and in the trials CSV, with the completion code), the participant cap, closing a study, consent and instructions,
`study list` and a new admin token.

Expected values are counted by hand from what each simulated participant was made to do."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.study.analysis import analyse, format_report, report, study_frame
from p2p_eval.study.lab import close_study, list_studies
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.store import make_engine


def _trials(engine: Any, token: str) -> list[Trial]:
    with OrmSession(engine) as db:
        sid = db.scalar(select(Session.id).where(Session.token == token))
        return list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))


def _take_part(client: Any, ids: dict[str, Any], fetch: bool = True, shown_ms: float = 300.0,
               wrong_vigilance: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """A participant who answers every trial right (vigilance wrong when asked), showing each image
    ``shown_ms``, fetching the images unless ``fetch`` is False, stopping after ``stop_after`` answers."""
    state = client.post("/api/studies/s1/sessions", json={"consent": True, **ids}).json()
    token = state["session"]
    for t in _trials(client.app.state.engine, token)[:stop_after]:
        trial = client.get(f"/api/s/{token}/trial/{t.index}").json()
        for url in trial["images"] if fetch else []:
            assert client.get(url).status_code == 200
        wrong = wrong_vigilance and t.kind == "vigilance"
        picked = 3 - t.fake_slot if wrong else t.fake_slot
        r = client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": str(picked), "onset1": 0.0,
                                                         "offset1": shown_ms})
        assert r.status_code == 200, r.text
    return state


def test_an_answer_to_images_never_fetched_is_stored_as_unseen_and_left_out(client, make_study) -> None:
    make_study(practice=0, trials=4)
    state = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "p"}).json()
    token = state["session"]
    for t in _trials(client.app.state.engine, token):
        trial = client.get(f"/api/s/{token}/trial/{t.index}").json()
        if t.index != 1:  # trial 1: answered without fetching its images, as a script could
            for url in trial["images"]:
                client.get(url)
        ack = client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": str(t.fake_slot)})
        assert ack.status_code == 200, "stored, not refused: the report decides"
    stored = _trials(client.app.state.engine, token)
    assert [(t.fetches1, t.fetches2) for t in stored] == [(1, 1), (0, 0), (1, 1), (1, 1)]
    report = analyse(client.app.state.engine, "s1", n_boot=50)
    alg = next(e for e in report["algorithms"].values() if e["sessions"])
    assert report["unseen"] == {"trials": 1} and alg["unseen_trials"] == 1
    assert alg["labeled_real"]["trials"] == 3 and alg["included"] == 1, "3 of 4 test trials scored"
    assert "answered without their images ever fetched (left out of the scores): 1 trial" in format_report(report).splitlines()
    frame = study_frame(client.app.state.engine, "s1")[2]
    assert frame["unseen"].tolist() == [False, True, False, False]


def test_csv_and_report_say_who_is_excluded_and_why(client, make_study, tmp_path) -> None:
    make_study(practice=0, trials=2, vigilance=1, vigilance_max_errors=0)
    _take_part(client, {"PROLIFIC_PID": "good"})
    _take_part(client, {"PROLIFIC_PID": "lazy"}, wrong_vigilance=True)
    _take_part(client, {"PROLIFIC_PID": "slowscreen"}, shown_ms=1000.0)
    _take_part(client, {"PROLIFIC_PID": "script"}, fetch=False)
    _take_part(client, {"PROLIFIC_PID": "left"}, stop_after=1)
    _take_part(client, {"PROLIFIC_PID": "GOOD "})  # the first participant's id again, in other case and spacing
    expected = {"prolific:good": ("", True), "prolific:lazy": ("vigilance", True),
                "prolific:slowscreen": ("timing", True), "prolific:script": ("unseen", True),
                "prolific:left": ("incomplete", False), "prolific:GOOD ": ("duplicate", True)}
    with OrmSession(client.app.state.engine) as db:
        codes = dict(db.execute(select(Session.participant, Session.completion_code)).all())
    result = report(client.app.state.engine, "s1", csv_out=tmp_path / "trials.csv", n_boot=50)
    csv = pd.read_csv(tmp_path / "trials.csv", keep_default_na=False)
    assert len(csv) == 6 * 3 and set(csv["participant"]) == set(expected)
    for who, rows in csv.groupby("participant"):
        reason, completed = expected[who]
        assert set(rows["completion_code"]) == {codes[who]}, who
        assert set(rows["exclusion_reason"]) == {reason} and set(rows["excluded"]) == {reason != ""}, who
        assert set(rows["completed"]) == {completed}, who
    entries = result["algorithms"].values()
    assert sum(e["included"] for e in entries) == 1 and sum(e["incomplete"] for e in entries) == 1
    for reason in ("vigilance", "timing", "unseen", "duplicate"):
        assert sum(e[f"excluded_{reason}"] for e in entries) == 1, reason
    text = format_report(result)
    assert "excluded participants: 5" in text
    for who, (reason, completed) in expected.items():
        line = f"  {who} | "
        assert (line in text) == (reason != ""), who
        if reason:
            assert f"{codes[who]} | {'yes' if completed else 'no'} | {reason}" in text


def test_cap_per_algorithm_then_study_full(client, make_study) -> None:
    make_study(max_participants=1)  # two algorithms: two participants fill it
    first = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "a", "SESSION_ID": "x"}).json()
    client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "b", "SESSION_ID": "x"})
    for route in ("check", "sessions"):
        r = client.post(f"/api/studies/s1/{route}", json={"PROLIFIC_PID": "c"})
        assert r.status_code == 410 and r.json()["reason"] == "full" and "full" in r.json()["detail"], route
    again = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "a", "SESSION_ID": "x"}).json()
    assert again["session"] == first["session"], "a started participant resumes in a full study"
    with OrmSession(client.app.state.engine) as db:
        assert sorted(db.scalars(select(Session.algorithm_id))) == [1, 2], "one per algorithm"
    assert [(s["name"], s["participants"], s["state"]) for s in list_studies(client.app.state.engine)] == \
        [("s1", 2, "full")]


def test_closed_study_refuses_new_arrivals_and_lets_started_ones_finish(client, make_study) -> None:
    make_study(practice=0, trials=1)
    state = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "a"}).json()
    assert close_study(client.app.state.engine, "s1") and not close_study(client.app.state.engine, "s1")
    r = client.post("/api/studies/s1/check", json={"PROLIFIC_PID": "new"})
    assert r.status_code == 410 and r.json()["reason"] == "closed"
    trial = client.get(f"/api/s/{state['session']}/trial/0").json()
    for url in trial["images"]:
        client.get(url)
    ack = client.post(f"/api/s/{state['session']}/answer", json={"index": 0, "answer": "1"}).json()
    assert ack["done"] and ack["completion_code"]
    assert list_studies(client.app.state.engine)[0]["state"] == "closed"


def test_consent_and_instructions_come_from_the_config(client, make_study) -> None:
    make_study(consent="You agree to take part.\nYou may stop at any time.", instructions="Look at the roads.")
    info = client.get("/api/studies/s1").json()
    assert info["consent"].startswith("You agree") and info["instructions"] == "Look at the roads."
    assert client.post("/api/studies/s1/check", json={"anon_id": "x"}).json() == {"status": "new"}
    refused = client.post("/api/studies/s1/sessions", json={"anon_id": "x"})
    assert refused.status_code == 422 and "consent" in refused.json()["detail"]
    assert client.post("/api/studies/s1/sessions", json={"anon_id": "x", "consent": "yes"}).status_code == 422
    assert client.post("/api/studies/s1/sessions", json={"anon_id": "x", "consent": True}).status_code == 200


def test_timing_fields_accept_any_finite_number_of_ms(client, make_study) -> None:
    make_study(practice=0, trials=2)
    token = client.post("/api/studies/s1/sessions", json={}).json()["session"]
    client.get(f"/api/s/{token}/trial/0")
    bad = client.post(f"/api/s/{token}/answer", content=b'{"index": 0, "answer": "1", "onset1": Infinity}',
                      headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "any finite number >= 0" in bad.json()["detail"]
    epoch = 1_765_000_000_000.0  # Date.now() rather than performance.now(): a valid number of ms
    r = client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1", "onset1": epoch, "offset1": epoch + 300})
    assert r.status_code == 200 and _trials(client.app.state.engine, token)[0].onset1 == epoch


def test_cli_list_close_and_new_token(tmp_path, image_dirs, capsys) -> None:
    from fastapi.testclient import TestClient

    from p2p_eval.cli import main
    from p2p_eval.study.server import create_app

    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["study", "create", "--db", db, "--name", "maps", "--real", str(image_dirs["real"]), "--images",
                 f"g={image_dirs['alg_a']}", "--max-participants", "50"]) == 0
    old = capsys.readouterr().out.split("admin token (shown once): ")[1].split()[0]
    assert main(["study", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "maps | 2afc | 0 (0) | 50 | open"
    assert main(["study", "token", "--db", db, "--study", "maps"]) == 0
    new = capsys.readouterr().out.strip().split()[-1]
    assert main(["study", "close", "--db", db, "--study", "maps"]) == 0
    assert "closed" in capsys.readouterr().out
    assert main(["study", "list", "--db", db]) == 0 and capsys.readouterr().out.splitlines()[1].endswith("| closed")
    assert main(["study", "token", "--db", db, "--study", "nope"]) == 2
    assert "no such study" in capsys.readouterr().err
    engine = make_engine(db)
    with TestClient(create_app(engine)) as client:
        url = "/api/admin/studies/maps/progress"
        assert client.get(url, headers={"Authorization": f"Bearer {new}"}).status_code == 200
        assert client.get(url, headers={"Authorization": f"Bearer {old}"}).status_code == 403
    engine.dispose()


def test_a_database_without_the_lab_columns_gets_them(tmp_path, make_study, db_url) -> None:
    make_study()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE study_studies DROP COLUMN consent")
    engine.dispose()
    engine = make_engine(db_url, create=False)
    assert list_studies(engine)[0]["state"] == "open"
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT consent FROM study_studies").all() == [(None,)]
    engine.dispose()


def test_answer_window_stores_a_miss_counted_as_wrong(client, make_study, image_dirs) -> None:
    from tests.study.loadgen import open_trial

    make_study(protocol="single", practice=0, trials=2, answer_ms=2000, fake={"alg_a": str(image_dirs["alg_a"])})
    state = client.post("/api/studies/s1/sessions", json={}).json()
    assert state["answer_ms"] == 2000 and client.get("/api/studies/s1").json()["answer_ms"] == 2000
    token = state["session"]
    trials = _trials(client.app.state.engine, token)
    open_trial(client, token, 0)
    assert client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "missed"}).status_code == 200
    open_trial(client, token, 1)
    truth = "fake" if trials[1].fake_slot else "real"
    assert client.post(f"/api/s/{token}/answer", json={"index": 1, "answer": truth}).status_code == 200
    stored = _trials(client.app.state.engine, token)
    assert [(t.answer, t.correct, t.judged_real) for t in stored] == [("missed", False, False), (truth, True, truth == "real")]
    report = analyse(client.app.state.engine, "s1", n_boot=50)
    entry = report["algorithms"]["alg_a"]
    assert entry["correct_real"]["trials"] + entry["correct_fake"]["trials"] == 2, "a miss is scored, as wrong"
    assert report["missed"] == {"trials": 1, "answer_ms": 2000}
    assert "missed answers (none within 2000 ms; counted as wrong, and never as labelled real): 1 trial" in \
        format_report(report).splitlines()
    make_study(name="s2", practice=0, trials=1)
    other = client.post("/api/studies/s2/sessions", json={}).json()["session"]
    open_trial(client, other, 0)
    assert client.post(f"/api/s/{other}/answer", json={"index": 0, "answer": "missed"}).status_code == 422
