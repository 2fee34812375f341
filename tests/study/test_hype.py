"""The HYPE-time staircase (p2p_eval.study.hype) against independent references.

- the rule itself, on hand-written answer sequences;
- the long-run distribution of a simulated staircase against the exact stationary distribution of the Markov
  chain that the rule defines (computed here from the rule as the paper states it, not from the module);
- convergence: a 3-down/1-up staircase settles where the observer is correct with probability
  0.5 ** (1/3) = 79.4% (Levitt 1971), for simulated observers whose psychometric function is known:
  P(correct | t) = 0.5 + 0.5 * logistic((t - t50) / s) (chance is 50%: real or fake), so the exposure of the
  79.4% point is t* = t50 + s * logit((0.794 - 0.5) / 0.5).  On a ladder of 100 ms rungs the chain's mean sits
  within ~10 ms of t* (the discreteness of the ladder), and HYPE's estimator (the modal exposure of each of 3
  staircases of 50 trials, averaged) within one rung; the tolerances below say so.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import hype_inf_scores
from p2p_eval.study.hype import (HypeTimeParams, Staircase, assign_staircases, evaluator_threshold,
                                 modal_exposure, next_exposure, reversal_exposures, staircase_levels, target_correct,
                                 StaircaseResult)

LADDER = tuple(range(100, 1001, 100))
OBSERVERS = [(300.0, 80.0), (450.0, 100.0), (250.0, 50.0), (600.0, 120.0)]  # (t50, spread) in ms
P79 = 0.5 ** (1 / 3)


def psi(t: float, t50: float, s: float) -> float:
    """P(correct) of the simulated observer at exposure t (ms)."""
    return 0.5 + 0.5 / (1 + math.exp(-(t - t50) / s))


def t_star(t50: float, s: float) -> float:
    """The exposure at which the observer is correct with probability 0.5 ** (1/3)."""
    f = (P79 - 0.5) / 0.5
    return t50 + s * math.log(f / (1 - f))


def exact_stationary(t50: float, s: float, ladder=LADDER, down: int = 3) -> np.ndarray:
    """Stationary level distribution of the chain on (level, correct run), written from the rule: ``down``
    correct in a row -> one rung shorter, an error -> one rung longer, clamped at the ends."""
    n = len(ladder)
    T = np.zeros((n * down, n * down))
    for level in range(n):
        p = psi(ladder[level], t50, s)
        for run in range(down):
            here = level * down + run
            if run + 1 < down:
                T[here, level * down + run + 1] += p
            else:
                T[here, max(0, level - 1) * down] += p
            T[here, min(n - 1, level + 1) * down] += 1 - p
    values, vectors = np.linalg.eig(T.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return (pi / pi.sum()).reshape(n, down).sum(axis=1)


def simulate(rng: random.Random, t50: float, s: float, trials: int, params: HypeTimeParams) -> tuple[list[int], list[bool]]:
    """One staircase run by the simulated observer: the exposures shown and the answers' correctness."""
    stair = Staircase(len(params.exposures_ms), params.start_level, params.down_after)
    shown, correct = [], []
    for _ in range(trials):
        t = params.exposures_ms[stair.level]
        ok = rng.random() < psi(t, t50, s)
        shown.append(t)
        correct.append(ok)
        stair.update(ok)
    return shown, correct


def test_rule_by_hand() -> None:
    # start at rung 4 (500 ms): three correct -> 400; a wrong -> 500; two correct then wrong -> 600 (run reset)
    assert staircase_levels([True, True, True], 10, 4) == [4, 4, 4, 3]
    assert staircase_levels([True, True, True, False], 10, 4) == [4, 4, 4, 3, 4]
    assert staircase_levels([True, True, False, True, True, True], 10, 4) == [4, 4, 4, 5, 5, 5, 4]
    assert staircase_levels([False] * 3, 3, 1) == [1, 2, 2, 2], "clamped at the longest exposure"
    assert staircase_levels([True] * 9, 3, 1) == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], "clamped at the shortest"
    assert staircase_levels([], 10, 4) == [4]
    params = HypeTimeParams()
    assert next_exposure(params, []) == 500
    assert next_exposure(params, [True] * 6) == 300
    assert next_exposure(params, [True] * 6 + [False]) == 400
    assert next_exposure(params, [False] * 20) == 1000
    assert next_exposure(HypeTimeParams(down_after=2), [True, True]) == 400


def test_target_is_79_point_4_percent() -> None:
    assert target_correct(3) == pytest.approx(0.7937, abs=1e-4)
    assert target_correct(2) == pytest.approx(0.7071, abs=1e-4)


@pytest.mark.parametrize("t50,s", OBSERVERS)
def test_long_run_matches_the_exact_chain(t50: float, s: float) -> None:
    params = HypeTimeParams()
    rng = random.Random(11)
    counts = np.zeros(len(LADDER))
    for _ in range(40):  # 40 runs of 2000 trials, the first 100 of each dropped
        shown, _ = simulate(rng, t50, s, 2000, params)
        for t in shown[100:]:
            counts[LADDER.index(t)] += 1
    empirical = counts / counts.sum()
    exact = exact_stationary(t50, s)
    tv = 0.5 * np.abs(empirical - exact).sum()
    assert tv < 0.02, f"total variation {tv:.3f} between simulated and exact level distributions"


@pytest.mark.parametrize("t50,s", OBSERVERS)
def test_converges_to_the_79_percent_point(t50: float, s: float) -> None:
    params = HypeTimeParams()
    target = t_star(t50, s)
    exact = exact_stationary(t50, s)
    chain_mean = float(np.dot(exact, LADDER))
    chain_correct = float(sum(p * psi(t, t50, s) for p, t in zip(exact, LADDER)))
    assert abs(chain_mean - target) < 25, f"chain mean {chain_mean:.0f} ms vs 79.4% point {target:.0f} ms"
    assert chain_correct == pytest.approx(P79, abs=0.01)
    for seed in range(8):  # over several seeds: long runs settle there, and HYPE's estimator lands within a rung
        rng = random.Random(seed)
        shown, correct = simulate(rng, t50, s, 4000, params)
        late, late_ok = shown[200:], correct[200:]
        assert abs(np.mean(late) - target) < 40, f"seed {seed}: mean exposure {np.mean(late):.0f} vs {target:.0f}"
        assert np.mean(late_ok) == pytest.approx(P79, abs=0.03), f"seed {seed}: {np.mean(late_ok):.3f} correct"
        evaluators = []
        for _ in range(60):  # 60 evaluators x 3 staircases x 50 trials, starting at 500 ms
            runs = [StaircaseResult(*map(list, simulate(rng, t50, s, 50, params))) for _ in range(3)]
            evaluators.append(evaluator_threshold(runs))
        assert abs(np.mean(evaluators) - target) < 100, \
            f"seed {seed}: HYPE-time {np.mean(evaluators):.0f} ms vs 79.4% point {target:.0f} ms (one rung = 100 ms)"


def test_staircase_assignment() -> None:
    blocked = assign_staircases(10, HypeTimeParams(staircases=3), random.Random(0))
    assert blocked == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    mixed = assign_staircases(10, HypeTimeParams(staircases=3, order="interleaved"), random.Random(0))
    assert sorted(mixed) == blocked and mixed != blocked
    assert mixed == assign_staircases(10, HypeTimeParams(staircases=3, order="interleaved"), random.Random(0))
    assert assign_staircases(2, HypeTimeParams(staircases=4), random.Random(0)) == [0, 1]


def test_modes_reversals_and_hype_inf_counts() -> None:
    assert modal_exposure([300, 300, 400, 400, 500]) == 350, "ties: the mean of the tied rungs"
    assert modal_exposure([500, 400, 400, 300]) == 400
    assert modal_exposure([]) is None
    assert reversal_exposures([500, 500, 400, 300, 400, 400, 300, 400]) == [300, 400, 300]
    runs = [StaircaseResult([500, 400, 400], [True] * 3), StaircaseResult([300, 300, 200], [True] * 3)]
    assert evaluator_threshold(runs) == 350
    # one evaluator: its fakes judged real, fake, real (2 errors of 3); its reals judged fake, real (1 error of 2)
    trials = pd.DataFrame({"session_id": [1] * 5, "fake_slot": [1, 1, 0, 0, 1],
                           "judged_real": [True, False, False, True, True]})
    scores = hype_inf_scores(trials, 100, np.random.default_rng(0))
    assert (scores["error"]["rate"], scores["error_fake"]["rate"], scores["error_real"]["rate"]) == (3 / 5, 2 / 3, 1 / 2)
    assert (scores["error"]["trials"], scores["error_fake"]["trials"], scores["error_real"]["trials"]) == (5, 3, 2)


def test_params_validate_and_round_trip() -> None:
    params = HypeTimeParams(exposures_ms=(50, 100, 200), staircases=2, order="interleaved", start_ms=100, mask_ms=0)
    params.validate()
    again = HypeTimeParams.from_json(params.to_json())
    assert again == params and json.loads(params.to_json())["hype_time"]["exposures_ms"] == [50, 100, 200]
    assert "no mask" in params.describe() and "79.4%" in HypeTimeParams().describe()
    assert "100-1000 ms in 100 ms steps" in HypeTimeParams().describe()
    for bad in (HypeTimeParams(start_ms=550), HypeTimeParams(exposures_ms=(300, 200)), HypeTimeParams(order="x"),
                HypeTimeParams(staircases=0), HypeTimeParams(exposures_ms=(5, 100)), HypeTimeParams(mask_ms=-1)):
        with pytest.raises(UserError):
            bad.validate()
