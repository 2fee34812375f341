"""Statistics of the study report against hand-computed numbers, an explicit (loop) two-level bootstrap,
and simulated participants with known rates."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.study.analysis import analyse, prob_greater, summarise, two_level_bootstrap
from p2p_eval.study.models import Session, Trial
from tests.study.loadgen import open_trial


def test_rate_and_se_by_hand() -> None:
    stat, boot = summarise(np.array([2, 1, 3]), np.array([4, 4, 4]), 500, np.random.default_rng(0))
    # rates 0.5, 0.25, 0.75: mean 0.5; sample sd 0.25; SE = 0.25 / sqrt(3)
    assert stat["rate"] == pytest.approx(0.5)
    assert stat["se"] == pytest.approx(0.25 / np.sqrt(3))
    assert stat["participants"] == 3 and stat["trials"] == 12 and boot.shape == (500,)
    assert stat["ci95"][0] < 0.5 < stat["ci95"][1]


def test_binomial_shortcut_matches_explicit_two_level_resampling() -> None:
    """Resampling trials within participants explicitly gives the same distribution of replicates."""
    rng = np.random.default_rng(1)
    outcomes = [rng.random(n) < p for n, p in [(40, 0.2), (40, 0.5), (30, 0.35), (40, 0.1), (35, 0.6)]]
    loops = []
    for _ in range(4000):
        people = rng.integers(0, len(outcomes), len(outcomes))
        loops.append(np.mean([rng.choice(outcomes[i], len(outcomes[i])).mean() for i in people]))
    k = np.array([o.sum() for o in outcomes])
    n = np.array([len(o) for o in outcomes])
    fast = two_level_bootstrap(k, n, 4000, np.random.default_rng(2))
    assert fast.mean() == pytest.approx(np.mean(loops), abs=0.006)
    assert fast.std() == pytest.approx(np.std(loops), rel=0.06)


def _simulate(rng: np.random.Generator, truth: float, participants: int, trials: int, spread: float = 0.12):
    """Participants whose own rates scatter around ``truth`` (Beta), each answering ``trials`` trials."""
    a = truth * (truth * (1 - truth) / spread**2 - 1)
    b = (1 - truth) * (truth * (1 - truth) / spread**2 - 1)
    rates = rng.beta(a, b, participants)
    return rng.binomial(trials, rates), np.full(participants, trials)


def test_ci_covers_the_truth_at_about_the_nominal_rate() -> None:
    truth, hits = 0.3, 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        k, n = _simulate(rng, truth, participants=30, trials=40)
        stat, _ = summarise(k, n, 1000, rng)
        hits += stat["ci95"][0] <= truth <= stat["ci95"][1]
    assert 0.88 <= hits / 200 <= 0.99


def test_se_matches_the_spread_of_estimates() -> None:
    estimates, ses = [], []
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        k, n = _simulate(rng, 0.2, participants=25, trials=40)
        rates = k / n
        estimates.append(rates.mean())
        ses.append(rates.std(ddof=1) / np.sqrt(len(rates)))
    assert np.std(estimates) == pytest.approx(np.mean(ses), rel=0.12)
    assert np.mean(estimates) == pytest.approx(0.2, abs=0.005)


def test_pairwise_probability() -> None:
    rng = np.random.default_rng(5)
    ka, na = _simulate(rng, 0.35, 30, 40)
    kb, nb = _simulate(rng, 0.10, 30, 40)
    _, boot_a = summarise(ka, na, 2000, rng)
    _, boot_b = summarise(kb, nb, 2000, rng)
    assert prob_greater(boot_a, boot_b) > 0.99 and prob_greater(boot_b, boot_a) < 0.01
    assert prob_greater(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 0.75  # tie counts half
    extreme = 0
    for seed in range(100):  # equal truths: P(A > B) rarely looks decisive
        rng = np.random.default_rng(seed)
        _, a = summarise(*_simulate(rng, 0.25, 20, 40), 500, rng)
        _, b = summarise(*_simulate(rng, 0.25, 20, 40), 500, rng)
        extreme += not 0.025 < prob_greater(a, b) < 0.975
    assert extreme <= 10


def _answer_all(client: TestClient, token: str, judged_real_on: set[int], fail_vigilance: bool = False) -> None:
    """Answer every trial; main trials in ``judged_real_on`` (test-trial numbers) judge the fake real."""
    with OrmSession(client.app.state.engine) as db:
        sid = db.scalar(select(Session.id).where(Session.token == token))
        trials = list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))
    main_no = 0
    for t in trials:
        fooled = t.kind == "main" and main_no in judged_real_on
        if t.kind == "vigilance":
            fooled = fail_vigilance
        main_no += t.kind == "main"
        chosen = 3 - t.fake_slot if fooled else t.fake_slot  # question "fake": picking the real one = fooled
        open_trial(client, token, t.index)
        assert client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": str(chosen)}).status_code == 200


def test_report_from_a_database(client, make_study) -> None:
    """Hand-set answers: alg_a participants fooled on 1/4 and 3/4 test trials -> 50%; SE by hand."""
    make_study(vigilance=1)
    plans = {}
    for pid in ("p1", "p2", "p3", "p4", "p5"):
        state = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": pid, "SESSION_ID": "x"}).json()
        with OrmSession(client.app.state.engine) as db:
            alg = db.scalar(select(Session.algorithm_id).where(Session.token == state["session"]))
        plans[pid] = (state["session"], alg)
    fooled = {"p1": {0}, "p2": {0, 1, 2}, "p3": {0, 1, 2, 3}, "p4": set(), "p5": {1}}
    client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": "p6", "SESSION_ID": "x"})  # never answers
    for pid, (token, _) in plans.items():
        _answer_all(client, token, fooled[pid], fail_vigilance=pid == "p5")
    report = analyse(client.app.state.engine, "s1", n_boot=500)
    by_alg: dict[int, list[str]] = {}
    for pid, (_, alg) in plans.items():
        by_alg.setdefault(alg, []).append(pid)
    names = list(report["algorithms"])
    groups = [sorted(by_alg[a]) for a in sorted(by_alg)]
    assert groups == [["p1", "p3", "p5"], ["p2", "p4"]]  # balanced assignment, in arrival order
    a, b = report["algorithms"][names[0]], report["algorithms"][names[1]]
    # alg_a: p1 (1/4), p3 (4/4); p5 failed vigilance -> excluded.  alg_b: p2, p4; p6 incomplete
    assert (a["included"], a["excluded_vigilance"], a["incomplete"]) == (2, 1, 0)
    assert (b["included"], b["excluded_vigilance"], b["incomplete"]) == (2, 0, 1)
    assert a["labeled_real"]["rate"] == pytest.approx(0.625)
    assert a["labeled_real"]["se"] == pytest.approx(np.std([0.25, 1.0], ddof=1) / np.sqrt(2))
    assert b["labeled_real"]["rate"] == pytest.approx(0.375)  # p2 3/4, p4 0/4
    assert report["pairwise"][0]["a"] == names[0] and 0 <= report["pairwise"][0]["p_a_gt_b"] <= 1


def test_single_protocol_report(client, make_study, image_dirs) -> None:
    """One image per trial: % correct for real and for fake images, mean of per-participant rates."""
    make_study(protocol="single", trials=8, practice=0, fake={"alg_a": str(image_dirs["alg_a"])})
    wrong_on_fakes = {"p1": 2, "p2": 0}  # p1 calls 2 of its 4 fakes real; both call every real image real
    for pid, wrong in wrong_on_fakes.items():
        token = client.post("/api/studies/s1/sessions", json={"PROLIFIC_PID": pid, "SESSION_ID": "x"}).json()["session"]
        with OrmSession(client.app.state.engine) as db:
            sid = db.scalar(select(Session.id).where(Session.token == token))
            trials = list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))
        fakes_seen = 0
        for t in trials:
            value = "real" if not t.fake_slot or fakes_seen < wrong else "fake"
            fakes_seen += t.fake_slot
            open_trial(client, token, t.index)
            client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": value})
    entry = analyse(client.app.state.engine, "s1", n_boot=200)["algorithms"]["alg_a"]
    assert entry["correct_real"]["rate"] == pytest.approx(1.0)
    assert entry["correct_fake"]["rate"] == pytest.approx(0.75)  # (2/4 + 4/4) / 2
    assert entry["labeled_real"]["rate"] == pytest.approx(0.25)
    assert entry["correct_fake"]["trials"] == 8 and entry["correct_real"]["trials"] == 8


def test_cli_create_and_report(tmp_path, image_dirs, capsys) -> None:
    from p2p_eval.cli import main

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "study.toml"
    config.write_text(f'name = "cfg"\nreal = "{image_dirs["real"]}"\ntrials = 3\npractice = 1\n'
                      f'[fake]\nalg_a = "{image_dirs["alg_a"]}"\n')
    assert main(["study", "create", "--db", db, "--config", str(config), "--protocol", "sequential",
                 "--display-ms", "500", "--vigilance", "1"]) == 0
    out = capsys.readouterr().out
    assert "admin token (shown once): " in out and "http://127.0.0.1:8000/s/cfg" in out
    assert main(["study", "create", "--db", db, "--name", "cfg", "--real", str(image_dirs["real"]),
                 "--fake", f"x={image_dirs['alg_a']}"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["study", "create", "--db", db, "--name", "bad", "--real", str(tmp_path / "missing"),
                 "--fake", f"x={image_dirs['alg_a']}"]) == 2
    assert main(["study", "create", "--db", db, "--name", "r", "--real", str(image_dirs["real"]),
                 "--fake", f"x={image_dirs['alg_a']}", "--redirect-url", "javascript:alert(1)"]) == 2
    capsys.readouterr()
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["study", "report", "--db", db, "--study", "cfg", "--json", str(out_json), "--csv", str(out_csv)]) == 0
    import json

    report = json.loads(out_json.read_text())
    assert report["protocol"] == "sequential" and report["algorithms"]["alg_a"]["sessions"] == 0
    assert out_csv.read_text().startswith("study,protocol,session_id")
    assert main(["study", "report", "--db", db, "--study", "nope"]) == 2
