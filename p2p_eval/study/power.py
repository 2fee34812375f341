"""How many participants a real-vs-fake study needs, by simulation (``p2p-eval study power``).

The model (one algorithm per session, pix2pix section 4.1): participant i's fooling probability p_i ~ Beta with
the algorithm's rate as mean and ``sd_between`` as sd, fakes judged real ~ Binomial(trials, p_i), each simulated
study analysed as ``study report`` does (:mod:`p2p_eval.study.analysis`).  Per participant count: each
algorithm's expected CI half-width and coverage, and each pair's power (share of studies whose difference CI
excludes 0; Monte-Carlo SE sqrt(power (1 - power) / sims)).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import two_level_bootstrap_many
from p2p_eval.study.simulate import beta_params, check_rate, draw_rates, parse_rates

TARGET_POWER = 0.8
CHUNK_ELEMENTS = 4_000_000  # bootstrap draws held in memory at once (x 8 bytes, a few arrays)


@dataclasses.dataclass
class PowerRow:
    """Results for one participant count (per algorithm)."""
    participants: int
    half_width: dict[str, float]  # mean 95% CI half-width of each algorithm's rate
    coverage: dict[str, float]  # share of CIs that hold the true rate
    power: dict[str, float]  # "A vs B" -> share of difference CIs that exclude 0


@dataclasses.dataclass
class PowerResult:
    """A power analysis: its settings, one row per participant count, and the counts that reach the targets."""
    fooling: dict[str, float]
    trials: int
    sd_between: float
    sims: int
    n_boot: int
    seed: int
    rows: list[PowerRow]
    half_width_target: float | None = None

    def pairs(self) -> list[str]:
        names = list(self.fooling)
        return [f"{a} vs {b}" for i, a in enumerate(names) for b in names[i + 1:]]

    def needed_for_power(self, target: float = TARGET_POWER) -> dict[str, int | None]:
        """Per pair, the smallest participant count (per algorithm) tried with power >= ``target``."""
        return {pair: next((r.participants for r in self.rows if r.power[pair] >= target), None) for pair in self.pairs()}

    def needed_for_half_width(self) -> dict[str, int | None]:
        """Per algorithm, the smallest count tried whose expected half-width is <= the target (if one was given)."""
        if self.half_width_target is None:
            return {}
        return {alg: next((r.participants for r in self.rows if r.half_width[alg] <= self.half_width_target), None)
                for alg in self.fooling}

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "power_target": TARGET_POWER, "needed_for_power": self.needed_for_power(),
                "needed_for_half_width": self.needed_for_half_width(),
                "model": "participants' rates ~ Beta(mean = fooling, sd = sd_between), probability scale; "
                         "k ~ Binomial(trials, rate); 95% two-level percentile bootstrap as in `study report`; "
                         "power = share of simulated studies whose difference CI excludes 0"}


def parse_fooling(text: str) -> dict[str, float]:
    """``"0.06,0.19"`` (each rate named by its value) or ``"l1=0.06,l1_cgan=0.19"`` -> {name: rate}."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not (out := parse_rates(",".join(t if "=" in t else f"{t}={t}" for t in items), "--fooling")):
        raise UserError("--fooling: give at least one rate, e.g. --fooling 0.06,0.19")
    return out


def parse_counts(text: str) -> list[int]:
    """``"10,20,40"`` -> [10, 20, 40] (sorted, unique, each >= 2)."""
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"--participants {text!r}: write whole numbers separated by commas, e.g. 10,20,40") from None
    if not counts or counts[0] < 2:
        raise UserError(f"--participants {text!r}: give counts >= 2 (a standard error needs two participants)")
    return counts


def power_curve(fooling: dict[str, float], trials: int, participants: Sequence[int], sd_between: float = 0.1,
                sims: int = 400, n_boot: int = 1000, seed: int = 0, half_width: float | None = None,
                progress: bool = False) -> PowerResult:
    """Simulate ``sims`` studies per participant count N (per algorithm), with ``default_rng([seed, N])``."""
    from tqdm.auto import tqdm

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"--trials {trials!r}: must be >= 1")
    if sims < 10 or n_boot < 100:
        raise UserError(f"--sims {sims} / --bootstrap {n_boot}: use at least 10 simulated studies and 100 bootstrap draws")
    if half_width is not None and not 0 < half_width < 1:
        raise UserError(f"--half-width {half_width}: a half-width on the rate scale lies in (0, 1), e.g. 0.05")
    for name, rate in fooling.items():
        check_rate(rate, f"--fooling {name}")
        beta_params(rate, sd_between, f"--fooling {name}")
    names = list(fooling)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    rows = []
    for count in tqdm(list(participants), desc="power", unit="count", disable=None if progress else True):
        rng, half, cover = np.random.default_rng([seed, count]), dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
        hits, chunk, done = {f"{a} vs {b}": 0 for a, b in pairs}, max(1, CHUNK_ELEMENTS // (n_boot * count)), 0
        while done < sims:
            c = min(chunk, sims - done)
            boots = {}
            for a in names:
                rates = draw_rates(fooling[a], sd_between, rng, size=(c, count))
                k = rng.binomial(trials, rates)
                boots[a] = two_level_bootstrap_many(k, np.full((c, count), trials), n_boot, rng)
                lo, hi = np.percentile(boots[a], [2.5, 97.5], axis=1)
                half[a] += float(((hi - lo) / 2).sum())
                cover[a] += int(((lo <= fooling[a]) & (fooling[a] <= hi)).sum())
            for a, b in pairs:
                lo, hi = np.percentile(boots[a] - boots[b], [2.5, 97.5], axis=1)
                hits[f"{a} vs {b}"] += int(((lo > 0) | (hi < 0)).sum())
            done += c
        rows.append(PowerRow(count, {a: half[a] / sims for a in names}, {a: cover[a] / sims for a in names},
                             {p: h / sims for p, h in hits.items()}))
    return PowerResult(dict(fooling), trials, float(sd_between), sims, n_boot, seed, rows, half_width)


def format_table(result: PowerResult) -> str:
    """A Markdown table: participants per algorithm, expected CI half-width per algorithm, power per pair."""
    names, pairs = list(result.fooling), result.pairs()
    se = lambda p: np.sqrt(p * (1 - p) / result.sims)  # noqa: E731 - Monte-Carlo SE of a share
    head = (["participants per algorithm"] + [f"CI half-width {a} ({100 * result.fooling[a]:.1f}%)" for a in names]
            + [f"power {p}" for p in pairs])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in result.rows:
        cells = [str(row.participants)] + [f"±{100 * row.half_width[a]:.1f} pts" for a in names]
        cells += [f"{row.power[p]:.2f} ± {se(row.power[p]):.2f}" for p in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\n{result.trials} test trials per participant; participants' rates ~ Beta(mean, sd "
                 f"{result.sd_between}) on the probability scale; {result.sims} simulated studies per row, "
                 f"{result.n_boot} bootstrap draws each (two-level, 95%, as `study report`); power = share whose "
                 f"difference CI excludes 0 (± its Monte-Carlo SE); seed {result.seed}.")
    for pair, n in result.needed_for_power().items():
        lines.append(f"- {TARGET_POWER:.0%} power for {pair}: " + (f"{n} participants per algorithm" if n else
                     "not reached by the counts tried (try larger --participants)"))
    for alg, n in result.needed_for_half_width().items():
        lines.append(f"- CI half-width <= {100 * result.half_width_target:.1f} pts for {alg}: "
                     + (f"{n} participants" if n else "not reached by the counts tried (try larger --participants)"))
    coverage = ", ".join(f"{a} {min(r.coverage[a] for r in result.rows):.2f}-{max(r.coverage[a] for r in result.rows):.2f}"
                         for a in names)
    lines.append(f"- coverage of the true rate by the 95% CI over the rows: {coverage}")
    return "\n".join(lines)


def plot(result: PowerResult, path: str | Path) -> None:
    """power.png: power vs participants per pair (left, 80% line) and CI half-width vs participants (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r.participants for r in result.rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for pair in result.pairs():
        power = np.array([r.power[pair] for r in result.rows])
        err = 1.96 * np.sqrt(power * (1 - power) / result.sims)
        left.errorbar(counts, power, yerr=err, marker="o", capsize=3, label=pair)
    left.axhline(TARGET_POWER, color="grey", ls="--", lw=1, label=f"{TARGET_POWER:.0%}")
    left.set(xlabel="participants per algorithm", ylabel="power (difference CI excludes 0)", ylim=(0, 1.02),
             title="Power to tell the algorithms apart")
    left.legend(fontsize=8)
    for alg, rate in result.fooling.items():
        right.plot(counts, [100 * r.half_width[alg] for r in result.rows], marker="o", label=f"{alg} ({100 * rate:.1f}%)")
    if result.half_width_target is not None:
        right.axhline(100 * result.half_width_target, color="grey", ls="--", lw=1, label="target")
    right.set(xlabel="participants per algorithm", ylabel="expected 95% CI half-width (points)",
              title="Precision of each rate")
    right.legend(fontsize=8)
    fig.suptitle(f"{result.trials} trials per participant, between-participant sd {result.sd_between} "
                 f"(probability scale), {result.sims} simulated studies per point", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(result: PowerResult, out: str | Path, command: str | None = None) -> list[Path]:
    """power.json, power.md (the table and the command that made it) and power.png under ``out``."""
    from p2p_eval.fsutil import atomic_write_text
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "power.json", folder / "power.md", folder / "power.png"]
    atomic_write_text(paths[0], json.dumps(result.to_json(), indent=2) + "\n")
    made = f"Made by `{command}`.\n\n" if command else ""
    atomic_write_text(paths[1], f"# Participants needed: power by simulation\n\n{made}{format_table(result)}\n\n"
                      "![power vs participants](power.png)\n")
    plot(result, paths[2])
    return paths
