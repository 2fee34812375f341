"""``study simulate`` runs a hype-time study with psychometric participants (p2p_eval.study.simulate's
PsychometricPopulation) through the HTTP API, and ``study report`` recovers their thresholds.

The observers are right with probability 0.5 + 0.5 * logistic((t - t50) / spread) at exposure t; the population
is parameterised by the exposure of the 79.4% point (the 3-down/1-up target).  HYPE's estimator (modal exposure
per staircase, on 100 ms rungs) lands within a rung of it (an offline run of 200 such evaluators: +20-40 ms above
when the staircases start above the threshold), so the test asks for less than 100 ms off and the right order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import analyse, format_report
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.simulate import PsychometricObserver, PsychometricPopulation, TrialView, parse_ms, simulate
from p2p_eval.study.store import make_engine


def view(ms: float, fake: int = 1, algorithm: str = "a") -> TrialView:
    return TrialView("hype-time", "fake", algorithm, "main", fake, False, ms, {"display_ms": ms, "mask_ms": 200})


def test_observer_accuracy_follows_its_psychometric_function() -> None:
    pop = PsychometricPopulation({"a": 400.0}, spread_ms=80.0)
    observer = pop.draw(np.random.default_rng(0))
    assert observer.p_correct(view(400.0)) == pytest.approx(0.5 ** (1 / 3), abs=1e-9), "79.4% at the threshold"
    assert observer.p_correct(view(100.0)) < 0.55 and observer.p_correct(view(1000.0)) > 0.99
    rng = np.random.default_rng(1)
    answers = [observer.answer(view(400.0, fake=i % 2), rng) for i in range(4000)]
    right = np.mean([(a == "fake") == bool(i % 2) for i, a in enumerate(answers)])
    assert right == pytest.approx(0.794, abs=0.025)
    timing = observer.timing(view(300.0), rng, 1000.0)
    assert timing["offset1"] - timing["onset1"] == 300.0 and timing["mask_onset"] == timing["offset1"]
    assert timing["mask_offset"] - timing["mask_onset"] == 200.0
    lapsed = PsychometricPopulation({"a": 400.0}, spread_ms=80.0, lapse=0.1).draw(np.random.default_rng(0))
    p = lapsed.p_correct(view(400.0))
    assert 0.9 * p + 0.05 == pytest.approx(0.5 ** (1 / 3)), "with lapses the overall accuracy is at the target"
    t50 = PsychometricObserver({"a": 0.0}, 1.0)
    assert t50.p_correct(view(0.0)) == 0.75 and math.isclose(t50.p_fooled(view(0.0)), 0.25)


def test_parse_and_checks() -> None:
    assert parse_ms("l1=250, l1_cgan=400.5", "--threshold-ms") == {"l1": 250.0, "l1_cgan": 400.5}
    for bad in ("l1", "l1=-3", "l1=x", "=4"):
        with pytest.raises(UserError, match="ALG=MS"):
            parse_ms(bad, "--threshold-ms")
    pop = PsychometricPopulation({"a": 300.0})
    with pytest.raises(UserError, match="this study is 2afc"):
        pop.check(["a"], "2afc")
    with pytest.raises(UserError, match="missing: b"):
        pop.check(["a", "b"], "hype-time")
    with pytest.raises(UserError, match="--lapse"):
        PsychometricPopulation({"a": 300.0}, lapse=0.9)


@pytest.mark.slow
def test_simulated_hype_time_study_recovers_the_thresholds(tmp_path, image_dirs, capsys) -> None:
    from p2p_eval.cli import main

    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = make_engine(db)
    truth = {"alg_a": 300.0, "alg_b": 550.0}
    try:
        create_study(engine, StudySpec(name="ht", real=str(image_dirs["real"]), protocol="hype-time", practice=0,
                                       trials=60, staircases=2, seed=1,
                                       fake={a: str(image_dirs[a]) for a in truth}))
        result = simulate(engine, "ht", 12, PsychometricPopulation(truth, spread_ms=60.0, sd_between_ms=20.0),
                          seed=3, progress=False)
        assert result.sessions == {"alg_a": 6, "alg_b": 6} and result.expected["alg_b"] == {"hype_time_ms": 550.0}
        report = analyse(engine, "ht", n_boot=500)
    finally:
        engine.dispose()
    got = {alg: e["hype_time"]["threshold_ms"] for alg, e in report["algorithms"].items()}
    print(format_report(report))
    assert all(abs(got[a] - truth[a]) < 100 for a in truth), got
    assert got["alg_a"] < got["alg_b"]
    for alg, e in report["algorithms"].items():
        assert e["hype_time"]["participants"] == 6 and e["timing_excluded_trials"] == 0
        assert e["hype_time"]["correct"] == pytest.approx(0.794, abs=0.06)
    base = ["study", "simulate", "--db", db, "--study", "ht", "--participants", "2", "--quiet", "--no-images"]
    assert main(base + ["--fooling", "alg_a=0.1,alg_b=0.2", "--threshold-ms", "alg_a=300,alg_b=500"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(base + ["--threshold-ms", "alg_a=300,alg_b=500", "--seed", "9"]) == 0
    assert "expected HYPE-time threshold ~500 ms" in capsys.readouterr().out
