"""``study simulate``: synthetic observers answer as specified, through the real HTTP API (in process), and
simulated studies recover the known rates within their bootstrap CIs at about the nominal coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import analyse
from p2p_eval.study.models import Algorithm, Session, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.simulate import (FoolingObserver, FoolingPopulation, TrialView, beta_params, draw_rates,
                                     parse_rates, parse_sd, simulate)
from p2p_eval.study.store import make_engine


def view(protocol: str = "2afc", fake_slot: int = 1, question: str = "fake", broken: bool = False,
         kind: str = "main") -> TrialView:
    return TrialView(protocol, question, "a", kind, fake_slot, broken, 1000.0, {})


def answers(observer: FoolingObserver, v: TrialView, n: int = 400, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [observer.answer(v, rng) for _ in range(n)]


def test_observer_answers_by_protocol_and_question() -> None:
    never, always = FoolingObserver({"a": 0.0}, {"a": 0.0}), FoolingObserver({"a": 1.0}, {"a": 1.0})
    for protocol in ("2afc", "sequential"):
        for slot in (1, 2):
            assert set(answers(never, view(protocol, slot))) == {str(slot)}  # picks the fake as fake
            assert set(answers(always, view(protocol, slot))) == {str(3 - slot)}  # picks the real one as fake
            assert set(answers(never, view(protocol, slot, question="real"))) == {str(3 - slot)}
            assert set(answers(always, view(protocol, slot, question="real"))) == {str(slot)}
            assert set(answers(always, view(protocol, slot, broken=True, kind="vigilance"))) == {str(slot)}
    assert set(answers(always, view("single", 1))) == {"real"}  # a fake image labelled real
    assert set(answers(never, view("single", 1))) == {"fake"}
    assert set(answers(FoolingObserver({"a": 1.0}, {"a": 0.0}), view("single", 0))) == {"real"}
    assert set(answers(FoolingObserver({"a": 0.0}, {"a": 1.0}), view("single", 0))) == {"fake"}  # false alarm
    assert set(answers(always, view("hype-time", 1, broken=True, kind="vigilance"))) == {"fake"}


def test_lapses_answer_at_random() -> None:
    lapsing = FoolingObserver({"a": 0.0}, {"a": 0.0}, lapse=1.0)
    for v, value in ((view("2afc", 1), "2"), (view("single", 1), "real"), (view("single", 0), "fake")):
        share = np.mean([a == value for a in answers(lapsing, v, 4000)])
        assert share == pytest.approx(0.5, abs=0.04)  # 4000 coin flips: sd 0.008
    half = FoolingObserver({"a": 0.3}, {"a": 0.3}, lapse=0.2)
    judged_real = np.mean([a == "2" for a in answers(half, view("2afc", 1), 20000)])
    assert judged_real == pytest.approx(0.8 * 0.3 + 0.2 / 2, abs=0.012)  # sd 0.0032


def test_between_participant_rates_have_the_asked_mean_and_sd() -> None:
    rates = draw_rates(0.19, 0.1, np.random.default_rng(0), size=200_000)
    assert rates.mean() == pytest.approx(0.19, abs=0.002) and rates.std() == pytest.approx(0.1, abs=0.002)
    assert beta_params(0.2, 0.0) is None and np.all(draw_rates(0.2, 0.0, None, size=3) == 0.2)
    with pytest.raises(UserError, match="too large"):
        beta_params(0.02, 0.2, "--fooling l1")


def test_parse_and_validate_rates() -> None:
    assert parse_rates("l1=0.05, l1_cgan=0.19", "--fooling") == {"l1": 0.05, "l1_cgan": 0.19}
    for bad, message in (("l1", "ALG=RATE"), ("l1=x", "not a number"), ("l1=1.5", r"\[0, 1\]"),
                         ("l1=-0.1", r"\[0, 1\]"), ("l1=0.1,l1=0.2", "twice")):
        with pytest.raises(UserError, match=message):
            parse_rates(bad, "--fooling")
    with pytest.raises(UserError, match="--lapse"):
        FoolingPopulation({"l1": 0.1}, lapse=2.0)
    with pytest.raises(UserError, match="not in --fooling"):
        FoolingPopulation({"l1": 0.1}, false_alarm={"l2": 0.1})
    pop = FoolingPopulation({"l1": 0.1, "l1_cgan": 0.3}, lapse=0.1, false_alarm={"l1": 0.2})
    assert pop.expected()["l1"] == pytest.approx({"labeled_real": 0.9 * 0.1 + 0.05, "correct_fake": 1 - 0.14,
                                                  "correct_real": 0.9 * 0.8 + 0.05})
    assert pop.false_alarm["l1_cgan"] == 0.3  # default: an unbiased observer
    assert parse_sd("0.1") == 0.1 and parse_sd("l1=0.02, l1_cgan=0.17") == {"l1": 0.02, "l1_cgan": 0.17}
    for bad in ("x", "0.7", "l1=-1"):
        with pytest.raises(UserError, match="--sd-between"):
            parse_sd(bad)
    mixed = FoolingPopulation({"l1": 0.2, "l1_cgan": 0.3}, sd_between={"l1_cgan": 0.1})
    draws = [mixed.draw(np.random.default_rng(i)).fooling for i in range(200)]
    assert {d["l1"] for d in draws} == {0.2} and np.std([d["l1_cgan"] for d in draws]) == pytest.approx(0.1, abs=0.02)
    with pytest.raises(UserError, match="not in --fooling"):
        FoolingPopulation({"l1": 0.2}, sd_between={"l2": 0.1})


def _study(engine, image_dirs: dict[str, Path], name: str = "sim", **overrides) -> None:  # noqa: ANN001
    values = {"name": name, "real": str(image_dirs["real"]),
              "fake": {"alg_a": str(image_dirs["alg_a"]), "alg_b": str(image_dirs["alg_b"])},
              "trials": 6, "practice": 2, "display_ms": 700, "seed": 1}
    values.update(overrides)
    create_study(engine, StudySpec(**values))


def _stored(engine, name: str = "sim") -> list:  # noqa: ANN001
    with OrmSession(engine) as db:
        return db.execute(select(Algorithm.name, Trial.kind, Trial.judged_real, Trial.correct, Trial.answer,
                                 Trial.fake_slot, Trial.onset1, Trial.offset1, Trial.onset2, Trial.offset2,
                                 Trial.fetches1, Trial.fetches2, Trial.views, Trial.response_ms)
                          .join(Session, Trial.session_id == Session.id)
                          .join(Algorithm, Session.algorithm_id == Algorithm.id)).all()


def test_simulated_participants_take_the_study_through_the_api(db_url, image_dirs) -> None:
    """alg_a's fakes are never taken for real, alg_b's always; vigilance always right; every trial viewed
    once, both images fetched once, timing as the page posts it; sessions balanced over algorithms."""
    engine = make_engine(db_url)
    try:
        _study(engine, image_dirs, vigilance=1)
        result = simulate(engine, "sim", 6, FoolingPopulation({"alg_a": 0.0, "alg_b": 1.0}), seed=4, progress=False)
        rows = _stored(engine)
    finally:
        engine.dispose()
    assert result.sessions == {"alg_a": 3, "alg_b": 3} and result.answers == 6 * 9 and result.already_done == 0
    assert len(rows) == 6 * 9 and all(r.answer is not None for r in rows)
    for r in rows:
        if r.kind == "vigilance":
            assert r.correct
        else:
            assert r.judged_real == (r.name == "alg_b")
        assert (r.views, r.fetches1, r.fetches2) == (1, 1, 1)
        assert r.offset1 - r.onset1 == pytest.approx(700) and (r.onset2, r.offset2) == (r.onset1, r.offset1)
        assert r.response_ms > 0


def test_single_and_sequential_protocols(tmp_path, image_dirs) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    try:
        _study(engine, image_dirs, name="one", protocol="single", practice=0, trials=8)
        simulate(engine, "one", 4, FoolingPopulation({"alg_a": 0.0, "alg_b": 1.0},
                                                     false_alarm={"alg_a": 1.0, "alg_b": 0.0}), progress=False)
        _study(engine, image_dirs, name="seq", protocol="sequential", question="real")
        simulate(engine, "seq", 2, FoolingPopulation({"alg_a": 1.0, "alg_b": 0.0}), images=False, progress=False)
        single = analyse(engine, "one", n_boot=200)["algorithms"]
        seq_rows = [r for r in _stored(engine) if r.onset2 is not None and r.onset2 != r.onset1]
    finally:
        engine.dispose()
    assert single["alg_a"]["correct_real"]["rate"] == 0 and single["alg_a"]["correct_fake"]["rate"] == 1
    assert single["alg_b"]["correct_real"]["rate"] == 1 and single["alg_b"]["correct_fake"]["rate"] == 0
    assert len(seq_rows) == 2 * 8  # sequential: the second image follows the first
    for r in seq_rows:
        assert r.judged_real == (r.name == "alg_a") and r.onset2 == r.offset1
        assert r.offset2 - r.onset2 == pytest.approx(700)
        assert (r.fetches1, r.fetches2) == (0, 0)  # --no-images


def test_same_seed_same_answers_and_a_rerun_resumes(tmp_path, image_dirs) -> None:
    pop = FoolingPopulation({"alg_a": 0.3, "alg_b": 0.6}, lapse=0.1, sd_between=0.1)
    runs = []
    for i in range(2):
        engine = make_engine(f"sqlite:///{tmp_path / f'r{i}.db'}")
        try:
            _study(engine, image_dirs)
            simulate(engine, "sim", 4, pop, seed=9, images=False, progress=False)
            runs.append([(r.name, r.kind, r.answer) for r in _stored(engine)])
            again = simulate(engine, "sim", 4, pop, seed=9, images=False, progress=False)
        finally:
            engine.dispose()
        assert again.already_done == 4 and again.answers == 0 and sum(again.sessions.values()) == 0
    assert runs[0] == runs[1]


def test_user_errors(tmp_path, image_dirs, capsys) -> None:
    from p2p_eval.cli import main

    db = f"sqlite:///{tmp_path / 'e.db'}"
    engine = make_engine(db)
    try:
        _study(engine, image_dirs)
        with pytest.raises(UserError, match="no such study.*studies: sim"):
            simulate(engine, "nope", 2, FoolingPopulation({"alg_a": 0.1}), progress=False)
        with pytest.raises(UserError, match="l1: not an algorithm of this study; its algorithms: alg_a, alg_b"):
            simulate(engine, "sim", 2, FoolingPopulation({"alg_a": 0.1, "alg_b": 0.2, "l1": 0.1}), progress=False)
        with pytest.raises(UserError, match="no rate for alg_b"):
            simulate(engine, "sim", 2, FoolingPopulation({"alg_a": 0.1}), progress=False)
    finally:
        engine.dispose()
    base = ["study", "simulate", "--db", db, "--study", "sim", "--participants", "2", "--quiet"]
    assert main(base + ["--fooling", "alg_a=0.1,alg_b=1.2"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert main(base + ["--fooling", "alg_a=0.1,alg_b=0.2", "--lapse", "-0.1"]) == 2
    assert "--lapse" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["study", "simulate", "--db", missing, "--study", "sim", "--participants", "2",
                 "--fooling", "alg_a=0.1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["--fooling", "alg_a=0.1,alg_b=0.6"]) == 0
    out = capsys.readouterr().out
    assert "alg_a: 1 new sessions; expected % labeled real 10.0%" in out and "--format paper" in out
    assert main(["study", "report", "--db", db, "--study", "sim", "--format", "paper"]) == 0
    assert "| alg_b |" in capsys.readouterr().out


# Coverage.  24 simulated studies (seeds), each with two algorithms, 8 participants per algorithm and 10 test
# trials each, participants' rates spread (Beta, sd 0.08) around the truth, 4% lapses: 48 two-level bootstrap
# 95% CIs.  An offline run of the same model (2000 replicates) puts this CI's coverage at 0.96-0.98 (the
# two-level bootstrap is somewhat conservative).  The test asks for at least 41 of 48: if the true coverage
# were the nominal 0.95, P(Binomial(48, 0.95) <= 40) = 0.0024 (a false alarm 1 run in 400); a coverage of 0.85
# or less fails with probability >= 0.5.  Runtime ~25 s on 2 busy cores (3840 answers and their 7680 image
# requests over HTTP: an answer to images never fetched would be left out of the report).
SEEDS, PER_ALG, TRIALS, LAPSE = 24, 8, 10, 0.04
TRUTH = {"alg_a": 0.2, "alg_b": 0.35}


def test_simulated_studies_recover_the_rates_at_nominal_coverage(tmp_path, image_dirs) -> None:
    assert binom.cdf(40, 2 * SEEDS, 0.95) < 0.003
    pop = FoolingPopulation(TRUTH, lapse=LAPSE, sd_between=0.08)
    expected = {alg: e["labeled_real"] for alg, e in pop.expected().items()}
    engine = make_engine(f"sqlite:///{tmp_path / 'cov.db'}")
    hits, estimates = 0, {alg: [] for alg in TRUTH}
    try:
        for seed in range(SEEDS):
            _study(engine, image_dirs, name=f"cov{seed}", practice=0, trials=TRIALS, seed=seed)
            simulate(engine, f"cov{seed}", 2 * PER_ALG, pop, seed=seed, progress=False)
            for alg, entry in analyse(engine, f"cov{seed}", n_boot=1000, seed=seed)["algorithms"].items():
                stat = entry["labeled_real"]
                assert stat["participants"] == PER_ALG and stat["trials"] == PER_ALG * TRIALS
                lo, hi = stat["ci95"]
                hits += lo <= expected[alg] <= hi
                estimates[alg].append(stat["rate"])
    finally:
        engine.dispose()
    assert hits >= 41, f"coverage {hits}/{2 * SEEDS}"
    for alg, values in estimates.items():  # unbiased: the mean of 24 estimates within 4 of its SEs
        assert np.mean(values) == pytest.approx(expected[alg], abs=4 * np.std(values, ddof=1) / np.sqrt(SEEDS))
