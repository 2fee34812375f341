"""``study power``: the vectorised bootstrap equals the report's, power and precision improve with participants,
and both match a closed-form (normal approximation to the binomial) calculation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import two_level_bootstrap, two_level_bootstrap_many
from p2p_eval.study.power import parse_counts, parse_fooling, power_curve

FOOLING, SD, TRIALS, COUNTS, SIMS = {"a": 0.2, "b": 0.3}, 0.1, 40, [5, 10, 20, 40], 600


def test_many_equals_the_reports_bootstrap_on_the_same_seed() -> None:
    k, n = np.array([3, 10, 0, 7, 12]), np.array([40, 40, 38, 40, 35])
    one = two_level_bootstrap(k, n, 700, np.random.default_rng(11))
    many = two_level_bootstrap_many(k[None], n[None], 700, np.random.default_rng(11))
    assert many.shape == (1, 700) and np.array_equal(many[0], one)


def test_many_sets_each_have_the_reports_distribution() -> None:
    rng = np.random.default_rng(3)
    k = rng.binomial(40, rng.uniform(0.05, 0.5, size=(3, 12)))
    n = np.full((3, 12), 40)
    many = two_level_bootstrap_many(k, n, 20_000, np.random.default_rng(4))
    for i in range(3):
        one = two_level_bootstrap(k[i], n[i], 20_000, np.random.default_rng(100 + i))
        assert many[i].mean() == pytest.approx(one.mean(), abs=0.002)
        assert many[i].std() == pytest.approx(one.std(), rel=0.03)


@pytest.fixture(scope="module")
def curve():  # noqa: ANN201
    return power_curve(FOOLING, TRIALS, COUNTS, sd_between=SD, sims=SIMS, n_boot=500, seed=0)


def test_power_and_precision_improve_with_participants(curve) -> None:  # noqa: ANN001
    power = [r.power["a vs b"] for r in curve.rows]
    assert [r.participants for r in curve.rows] == COUNTS
    assert all(later > earlier for earlier, later in zip(power, power[1:], strict=False)), power
    for alg in FOOLING:
        widths = [r.half_width[alg] for r in curve.rows]
        assert all(later < earlier for earlier, later in zip(widths, widths[1:], strict=False)), widths
    assert curve.needed_for_power() == {"a vs b": next((r.participants for r in curve.rows
                                                        if r.power["a vs b"] >= 0.8), None)}


def closed_form(m: float, sd: float, trials: int, n: int) -> tuple[float, float]:
    """(variance of the estimate, variance of its two-level bootstrap replicates), normal approximation.

    A participant's observed rate has variance sd^2 + w / T around the mean, w = E[p (1 - p)] = m (1 - m) - sd^2
    (binomial within, Beta between).  The bootstrap's first level resamples participants (variance of the
    observed rates with ddof 0: a factor (N - 1) / N); its second level adds each resampled participant's
    binomial variance r (1 - r) / T once more, E[r (1 - r)] = w (1 - 1 / T)."""
    w = m * (1 - m) - sd * sd
    observed = sd * sd + w / trials
    return observed / n, ((n - 1) / n * observed + w * (1 - 1 / trials) / trials) / n


# Tolerances: with 600 simulated studies a power estimate's Monte-Carlo SE is at most 0.5 / sqrt(600) = 0.020;
# 0.08 = 3 such SEs plus 0.02 for the normal approximation (the percentile bootstrap of skewed rates at 10
# participants).  A half-width is a mean over 600 studies (MC error < 1%); the normal approximation of the
# percentile interval leaves a few percent, hence 8%.  Counts below 10 are left out: there the approximation
# itself is poor.
@pytest.mark.parametrize("count", [10, 20, 40])
def test_power_matches_the_closed_form(curve, count: int) -> None:  # noqa: ANN001
    row = next(r for r in curve.rows if r.participants == count)
    (true_a, boot_a), (true_b, boot_b) = (closed_form(FOOLING[x], SD, TRIALS, count) for x in "ab")
    diff, spread, width = FOOLING["b"] - FOOLING["a"], np.sqrt(true_a + true_b), 1.96 * np.sqrt(boot_a + boot_b)
    expected = norm.cdf((diff - width) / spread) + norm.cdf((-diff - width) / spread)
    assert row.power["a vs b"] == pytest.approx(expected, abs=0.08)
    assert row.half_width["a"] == pytest.approx(1.96 * np.sqrt(boot_a), rel=0.08)
    assert row.half_width["b"] == pytest.approx(1.96 * np.sqrt(boot_b), rel=0.08)
    assert 0.9 <= row.coverage["a"] <= 1 and 0.9 <= row.coverage["b"] <= 1


def test_parsing_and_errors() -> None:
    assert parse_fooling("0.06,0.19") == {"0.06": 0.06, "0.19": 0.19}
    assert parse_fooling("l1=0.06, l1_cgan=0.19") == {"l1": 0.06, "l1_cgan": 0.19}
    assert parse_counts("40,10,20,10") == [10, 20, 40]
    for bad in ("1.2", "x", ""):
        with pytest.raises(UserError):
            parse_fooling(bad)
    with pytest.raises(UserError, match=">= 2"):
        parse_counts("1,10")
    with pytest.raises(UserError, match="too large"):
        power_curve({"a": 0.02}, 40, [10], sd_between=0.3, sims=20, n_boot=100)


def test_cli_writes_table_json_and_plot(tmp_path, capsys) -> None:
    from p2p_eval.cli import main

    out = tmp_path / "pw"
    assert main(["study", "power", "--fooling", "l1=0.06,l1_cgan=0.19", "--trials", "40", "--participants", "10,30",
                 "--half-width", "0.05", "--sims", "40", "--bootstrap", "200", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| participants per algorithm |" in printed and "80% power for l1 vs l1_cgan" in printed
    data = json.loads((out / "power.json").read_text())
    assert [r["participants"] for r in data["rows"]] == [10, 30] and data["sd_between"] == 0.1
    assert set(data["needed_for_half_width"]) == {"l1", "l1_cgan"}
    assert (out / "power.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Made by `p2p-eval study power" in (out / "power.md").read_text()
    assert main(["study", "power", "--fooling", "0.06,1.5"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
