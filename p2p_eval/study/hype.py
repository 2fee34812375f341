"""HYPE (Zhou, Gordon, Krishna, Narcomey, Fei-Fei, Bernstein, "HYPE: A Benchmark for Human eYe Perceptual
Evaluation of Generative Models", NeurIPS 2019): the adaptive staircase of HYPE-time and its scores, as pure
functions of the recorded answers (no database, no clock; randomness only from a seeded ``random.Random``).

HYPE-time (section 3.1): one image, real or fake, shown for an exposure from a ladder, then a noise mask, then
"real" or "fake".  The exposure follows a transformed up-down staircase (Levitt 1971): ``down_after`` (3) correct
in a row one rung shorter, every error one rung longer (clamped at the ends).  A block's threshold is its modal
exposure (figure 3; ties: the mean of the tied rungs), an evaluator's score the mean of their blocks' modes.
Our choices (:class:`HypeTimeParams`, stated in every report): ladder 100-1000 ms in 100 ms steps, start 500 ms,
3 staircases blocked or interleaved (Cornsweet 1962), practice at the start exposure and vigilance at the
longest, moving no staircase; 3-down/1-up converges on 79.4% correct (Levitt 1971, table I; the paper writes
"75%"); a fresh uniform RGB noise mask of ``mask_ms`` (200 ms; 0 = none).  HYPE-infinity (section 3.2): the
same judgement with unlimited time, scored by the error rate (:func:`p2p_eval.study.analysis.hype_inf_scores`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from p2p_eval.errors import UserError

ORDERS = ("blocked", "interleaved")
DEFAULT_LADDER: tuple[int, ...] = tuple(range(100, 1001, 100))


def target_correct(down_after: int) -> float:
    """The proportion correct a ``down_after``-down/1-up staircase converges on: p ** down_after = 1/2."""
    return 0.5 ** (1.0 / down_after)


@dataclass(frozen=True)
class HypeTimeParams:
    """The staircase of a ``hype-time`` study (stored with the study as JSON)."""

    exposures_ms: tuple[int, ...] = DEFAULT_LADDER
    staircases: int = 3
    order: str = "blocked"
    start_ms: int = 500
    down_after: int = 3
    mask_ms: int = 200
    reversals_for_mean: int = 6  # diagnostic: mean of the last this-many reversal exposures

    def validate(self) -> None:
        """Raise UserError naming the bad setting."""
        ladder = list(self.exposures_ms)
        if not ladder or any(not isinstance(v, int) or isinstance(v, bool) for v in ladder):
            raise UserError(f"exposures_ms must be a list of whole milliseconds, not {self.exposures_ms!r}")
        if sorted(set(ladder)) != ladder or len(ladder) < 2:
            raise UserError(f"exposures_ms {ladder}: give at least 2 exposures, strictly increasing")
        if ladder[0] < 17 or ladder[-1] > 60_000:
            raise UserError(f"exposures_ms {ladder}: use 17..60000 ms (one 60 Hz frame is 16.7 ms)")
        if self.start_ms not in ladder:
            raise UserError(f"start_ms {self.start_ms} is not a rung of exposures_ms {ladder}")
        if self.order not in ORDERS:
            raise UserError(f"staircase_order {self.order!r}: choose blocked (HYPE's blocks) or interleaved")
        for key, low in (("staircases", 1), ("down_after", 1), ("mask_ms", 0), ("reversals_for_mean", 1)):
            if not isinstance(value := getattr(self, key), int) or isinstance(value, bool) or value < low:
                raise UserError(f"{key} must be an integer >= {low}, not {value!r}")
        if self.mask_ms > 5000:
            raise UserError(f"mask_ms {self.mask_ms}: use 0..5000 ms")

    @property
    def start_level(self) -> int:
        return list(self.exposures_ms).index(self.start_ms)

    def to_json(self) -> str:
        """The parameters as stored in ``Study.protocol_params``."""
        return json.dumps({"hype_time": {**asdict(self), "exposures_ms": list(self.exposures_ms)}}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> HypeTimeParams:
        """Parameters from :meth:`to_json` (defaults when ``text`` is empty)."""
        values = dict(json.loads(text).get("hype_time", {})) if text else {}
        if "exposures_ms" in values:
            values["exposures_ms"] = tuple(values["exposures_ms"])
        return cls(**values)

    def describe(self) -> str:
        ladder = list(self.exposures_ms)
        steps = {b - a for a, b in zip(ladder, ladder[1:])}
        rungs = (f"{ladder[0]}-{ladder[-1]} ms in {steps.pop()} ms steps" if len(steps) == 1
                 else ", ".join(str(v) for v in ladder) + " ms")
        mask = f"noise mask {self.mask_ms} ms" if self.mask_ms else "no mask"
        return (f"{self.staircases} {self.order} {self.down_after}-down/1-up staircases over {rungs}, start "
                f"{self.start_ms} ms, {mask}; converges on {100 * target_correct(self.down_after):.1f}% correct; "
                "threshold = modal exposure per staircase, mean over staircases")


@dataclass
class Staircase:
    """A transformed up-down staircase over ``n_levels`` rungs (0 = shortest exposure): ``down_after`` correct
    answers in a row -> one rung down, any error -> one rung up; clamped; the run restarts after every step."""

    n_levels: int
    level: int
    down_after: int = 3
    run: int = 0

    def update(self, correct: bool) -> int:
        """Record one answer at the current level; return the level of the next trial."""
        if correct:
            self.run += 1
            if self.run >= self.down_after:
                self.level, self.run = max(0, self.level - 1), 0
        else:
            self.level, self.run = min(self.n_levels - 1, self.level + 1), 0
        return self.level


def staircase_levels(correct: Sequence[bool], n_levels: int, start: int, down_after: int = 3) -> list[int]:
    """Ladder indices of a staircase's trials given their correctness (:class:`Staircase`), plus the next's."""
    stair = Staircase(n_levels, start, down_after)
    return [start] + [stair.update(bool(ok)) for ok in correct]


def next_exposure(params: HypeTimeParams, correct: Sequence[bool]) -> int:
    """The exposure (ms) of a staircase's next trial, given the correctness of its answered trials in order."""
    levels = staircase_levels(correct, len(params.exposures_ms), params.start_level, params.down_after)
    return params.exposures_ms[levels[-1]]


def assign_staircases(n_trials: int, params: HypeTimeParams, rng: random.Random) -> list[int]:
    """The staircase of each of ``n_trials`` test trials: blocked = consecutive runs of (nearly) equal length,
    interleaved = the same counts in a seeded random order."""
    k = min(params.staircases, n_trials) or 1
    counts = [n_trials // k + (1 if s < n_trials % k else 0) for s in range(k)]
    ids = [s for s in range(k) for _ in range(counts[s])]
    if params.order == "interleaved":
        rng.shuffle(ids)
    return ids


def modal_exposure(exposures: Sequence[float]) -> float | None:
    """The exposure shown most often (the mean of the tied ones when several are); None when empty."""
    counts = Counter(exposures)
    top = max(counts.values(), default=0)
    tied = [value for value, n in counts.items() if n == top]
    return float(sum(tied) / len(tied)) if tied else None


def reversal_exposures(exposures: Sequence[float]) -> list[float]:
    """Exposures at which the staircase shown ``exposures`` changed direction (flat runs skipped)."""
    out, direction = [], 0
    for prev, cur in zip(exposures, exposures[1:]):
        if cur == prev:
            continue
        step = 1 if cur > prev else -1
        if direction and step != direction:
            out.append(float(prev))
        direction = step
    return out


@dataclass
class StaircaseResult:
    """One staircase of one evaluator: exposures shown (in order), correctness, and its thresholds."""

    exposures: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)

    @property
    def mode(self) -> float | None:  # HYPE's threshold of the block
        return modal_exposure(self.exposures)

    def reversal_mean(self, last: int) -> float | None:
        """Levitt's estimator (diagnostic): the mean of the last ``last`` reversal exposures."""
        rev = reversal_exposures(self.exposures)[-last:]
        return float(sum(rev) / len(rev)) if rev else None


def evaluator_threshold(staircases: Sequence[StaircaseResult]) -> float | None:
    """An evaluator's HYPE-time score: the mean of the modal exposures of their staircases (None when none)."""
    modes = [s.mode for s in staircases if s.mode is not None]
    return float(sum(modes) / len(modes)) if modes else None
