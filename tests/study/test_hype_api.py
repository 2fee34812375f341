"""HYPE sessions through the API (FastAPI TestClient), on SQLite and PostgreSQL: hype-time exposures chosen by the
server follow the 3-down/1-up rule (checked here with the rule written out, not with p2p_eval.study.hype), a
reload or a server restart resumes every staircase exactly, and ``study report`` gives the HYPE scores computed
here from the stored trials; hype-inf error rates; the display-timing exclusion; an older database still reports.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import analyse, format_report
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.plan import StudySpec, create_study, load_spec
from p2p_eval.study.store import make_engine
from tests.study.loadgen import open_trial

LADDER = list(range(100, 1001, 100))


def start(client: Any, study: str = "s1", **ids: Any) -> dict[str, Any]:
    r = client.post(f"/api/studies/{study}/sessions", json=ids)
    assert r.status_code == 200, r.text
    return r.json()


def stored(engine: Any, token: str) -> list[Trial]:
    with OrmSession(engine) as db:
        sid = db.scalar(select(Session.id).where(Session.token == token))
        return list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))


class Rule:
    """The staircase rule as the paper states it: 3 correct in a row -> one rung shorter, an error -> one longer."""

    def __init__(self, start_ms: int = 500) -> None:
        self.level, self.run = LADDER.index(start_ms), 0

    @property
    def exposure(self) -> int:
        return LADDER[self.level]

    def answer(self, correct: bool) -> None:
        if correct:
            self.run += 1
            if self.run == 3:
                self.level, self.run = max(0, self.level - 1), 0
        else:
            self.level, self.run = min(len(LADDER) - 1, self.level + 1), 0


def correct_answer(trial: Trial, right: bool) -> str:
    truth = "fake" if trial.fake_slot else "real"
    return truth if right else ("real" if truth == "fake" else "fake")


def pattern(i: int) -> bool:
    """Which test trials the participant gets right: mostly right, a wrong one every fifth."""
    return i % 5 != 4


def test_hype_time_session_follows_the_staircase_and_resumes(client, make_study, db_url) -> None:
    make_study(protocol="hype-time", practice=1, trials=18, staircases=2, staircase_order="interleaved", vigilance=1)
    ids = {"PROLIFIC_PID": "P1", "STUDY_ID": "S", "SESSION_ID": "X"}
    state = start(client, **ids)
    assert state["protocol"] == "hype-time" and state["total"] == 1 + 18 + 1
    info = client.get("/api/studies/s1").json()
    assert info["mask_ms"] == 200
    plan = stored(client.app.state.engine, state["session"])
    tests = [t for t in plan if t.kind == "main"]
    assert Counter(t.staircase for t in tests) == {0: 9, 1: 9}, "two staircases of 9 test trials"
    assert all(t.staircase is None for t in plan if t.kind != "main")
    assert all(t.exposure_ms is None for t in plan), "exposures are chosen when a trial opens, not planned"
    rules = {0: Rule(), 1: Rule()}
    seen, served = 0, {}
    token = state["session"]
    for t in plan:
        trial = open_trial(client, token, t.index).json()
        expected = {"practice": 500, "vigilance": 1000}.get(t.kind) or rules[t.staircase].exposure
        assert trial["display_ms"] == expected and trial["mask_ms"] == 200, (t.index, t.kind, trial)
        assert client.get(f"/api/s/{token}/trial/{t.index}").json()["display_ms"] == expected, "a reload: same"
        served[t.index] = expected
        if t.index == 8:  # mid-session: a restarted server resumes the same staircase position
            from fastapi.testclient import TestClient

            from p2p_eval.study.server import create_app

            app = create_app(db_url)
            with TestClient(app) as other:
                again = start(other, **ids)
                assert again["next_index"] == t.index and again["resumed"]
                assert other.get(f"/api/s/{token}/trial/{t.index}").json()["display_ms"] == expected
            app.state.engine.dispose()
        right = pattern(seen) if t.kind == "main" else True
        body = {"index": t.index, "answer": correct_answer(t, right), "onset1": 100.0, "offset1": 100.0 + expected,
                "frame_ms": 16.7, "mask_onset": 100.0 + expected, "mask_offset": 300.0 + expected, "response_ms": 700.0}
        ack = client.post(f"/api/s/{token}/answer", json=body)
        assert ack.status_code == 200, ack.text
        if t.kind == "practice":
            assert ack.json()["feedback"] == {"correct": True, "truth": "fake" if t.fake_slot else "real"}
        if t.kind == "main":
            rules[t.staircase].answer(right)
            seen += 1
    after = stored(client.app.state.engine, token)
    assert {t.index: t.exposure_ms for t in after} == served, "the stored exposure is the one served"
    assert all(t.frame_ms == 16.7 and t.mask_offset - t.mask_onset == 200.0 for t in after)

    engine = client.app.state.engine
    result = analyse(engine, "s1", n_boot=200)
    alg = next(a for a, e in result["algorithms"].items() if e["sessions"])
    hype = result["algorithms"][alg]["hype_time"]
    modes = []
    for s in (0, 1):
        exposures = Counter(t.exposure_ms for t in after if t.staircase == s)
        top = max(exposures.values())
        tied = [e for e, n in exposures.items() if n == top]
        modes.append(sum(tied) / len(tied))
    assert hype["participants"] == 1 and hype["threshold_ms"] == pytest.approx(sum(modes) / 2)
    assert hype["per_participant"][0]["modes_ms"] == modes
    assert hype["target_correct"] == pytest.approx(0.7937, abs=1e-4)
    timing = result["display_timing"]
    assert timing["excluded"] == 0 and timing["judged"] == 20 and timing["mask"]["median"] == 200.0
    text = format_report(result)
    assert "HYPE-time" in text and "display timing" in text and "79.4%" in text


def test_hype_time_answer_needs_an_opened_trial(client, make_study) -> None:
    make_study(protocol="hype-time", practice=0, trials=3, staircases=1)
    token = start(client)["session"]
    r = client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "real"})
    assert r.status_code == 409 and "opened" in r.json()["detail"]


def test_blocked_staircases_run_one_after_the_other(client, make_study) -> None:
    make_study(protocol="hype-time", practice=0, trials=7, staircases=3, exposures_ms=[100, 300, 900], start_ms=900,
               mask_ms=0)
    token = start(client)["session"]
    plan = stored(client.app.state.engine, token)
    assert [t.staircase for t in plan] == [0, 0, 0, 1, 1, 2, 2]
    shown = []
    for t in plan:  # all correct: staircase 0 steps down after its third trial; the others never get 3 in a row
        trial = client.get(f"/api/s/{token}/trial/{t.index}").json()
        shown.append(trial["display_ms"])
        assert trial["mask_ms"] == 0
        client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": correct_answer(t, True)})
    assert shown == [900, 900, 900, 900, 900, 900, 900]
    make_study(name="s2", protocol="hype-time", practice=0, trials=4, staircases=1, exposures_ms=[100, 300, 900],
               start_ms=900)
    token = start(client, "s2")["session"]
    shown = []
    for t in stored(client.app.state.engine, token):
        shown.append(client.get(f"/api/s/{token}/trial/{t.index}").json()["display_ms"])
        client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": correct_answer(t, True)})
    assert shown == [900, 900, 900, 300]


def test_hype_inf_error_rates(client, make_study) -> None:
    make_study(protocol="hype-inf", practice=0, trials=10)
    counts = {"fake": [0, 0], "real": [0, 0]}  # [errors, trials]
    for p in range(3):
        token = start(client, anon_id=f"a{p}")["session"]
        for t in stored(client.app.state.engine, token):
            trial = open_trial(client, token, t.index).json()
            assert trial["display_ms"] is None, "hype-inf: the image stays until the answer"
            right = (t.index + p) % 3 != 0
            client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": correct_answer(t, right),
                                                        "onset1": 0.0, "offset1": 2500.0})
            group = "fake" if t.fake_slot else "real"
            counts[group][0] += not right
            counts[group][1] += 1
    result = analyse(client.app.state.engine, "s1", n_boot=200)
    hype = {a: e["hype_inf"] for a, e in result["algorithms"].items() if e["included"]}
    per_alg_trials = sum(h["error"]["trials"] for h in hype.values())
    assert per_alg_trials == 30 and all(counts[g][1] == 15 for g in counts), "balanced: 5 real + 5 fake each"
    errors = sum(h["error"]["rate"] * h["error"]["trials"] for h in hype.values())  # equal trials per participant
    assert errors == pytest.approx(counts["fake"][0] + counts["real"][0])
    fake_errors = sum(h["error_fake"]["rate"] * h["error_fake"]["trials"] for h in hype.values())
    assert fake_errors == pytest.approx(counts["fake"][0])
    assert result["display_timing"]["viewing_ms"]["median"] == 2500.0 and result["display_timing"]["judged"] == 0
    assert "HYPE-infinity" in format_report(result)


def test_trials_shown_a_frame_too_long_are_excluded(client, make_study) -> None:
    make_study(protocol="single", practice=0, trials=6, display_ms=300)
    token = start(client)["session"]
    shown = [300.0, 316.7, 283.4, 334.0, 350.0, None]  # the 4th misses by 34 ms (> 16.7 + 1), the 5th by 50
    for t, ms in zip(stored(client.app.state.engine, token), shown):
        open_trial(client, token, t.index)
        body = {"index": t.index, "answer": correct_answer(t, True)}
        if ms is not None:
            body.update(onset1=1000.0, offset1=1000.0 + ms, frame_ms=16.7)
        client.post(f"/api/s/{token}/answer", json=body)
    result = analyse(client.app.state.engine, "s1", n_boot=100)
    timing = result["display_timing"]
    assert (timing["judged"], timing["excluded"], timing["excluded_main"], timing["unmeasured"]) == (5, 2, 2, 1)
    entry = next(e for e in result["algorithms"].values() if e["included"])
    assert entry["timing_excluded_trials"] == 2
    assert entry["correct_real"]["trials"] + entry["correct_fake"]["trials"] == 4, "6 answered - 2 excluded"
    assert "excluded 2" in format_report(result)


def test_spec_checks_and_template(image_dirs, tmp_path) -> None:
    base = {"name": "x", "real": str(image_dirs["real"]), "fake": {"a": str(image_dirs["alg_a"])}}
    with pytest.raises(UserError, match="hype-time only"):
        StudySpec(**base, protocol="2afc", staircases=3).validate()
    with pytest.raises(UserError, match="one test trial per staircase"):
        StudySpec(**base, protocol="hype-time", trials=2, staircases=3).validate()
    with pytest.raises(UserError, match="start_ms"):
        StudySpec(**base, protocol="hype-time", start_ms=550).validate()
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "studies"
    for name, protocol in (("hype_time.toml", "hype-time"), ("hype_inf.toml", "hype-inf")):
        spec = load_spec(root / name, {"real": str(image_dirs["real"]), "fake": {"g": str(image_dirs["alg_a"])},
                                       "name": f"t-{protocol}"})
        assert spec.protocol == protocol
        spec.validate()
        engine = make_engine(f"sqlite:///{tmp_path / (protocol + '.db')}")
        study, _ = create_study(engine, spec)
        engine.dispose()
        assert study.protocol == protocol
