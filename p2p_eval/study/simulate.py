"""Simulated participants of known behaviour over the study's HTTP API (``p2p-eval study simulate``).

Synthetic participants make the page's requests (:func:`take_part`) on the app run in process
(:func:`p2p_eval.study.server.create_app` through ``httpx.ASGITransport``), one after the other, so assignments
and answers are reproducible from ``--seed``.  A :class:`Population` draws one :class:`Observer` per
participant, who sees the trial as the page gets it plus the truth the server keeps.  :class:`FoolingObserver`:
with probability ``lapse`` a random answer, else the fake taken for real with its algorithm's fooling
probability (single-image: a real image labelled fake with its false-alarm probability); vigilance trials always
right; so the expected "% labeled real" is ``(1 - lapse) * fooling + lapse / 2``.  With ``sd_between`` > 0 the
probabilities are drawn per participant from a Beta (as :mod:`p2p_eval.study.power`).
:class:`PsychometricPopulation` (``hype-time``): right with a logistic function of the exposure.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from p2p_eval.errors import UserError, count
from p2p_eval.study.models import Algorithm, Session, Study, Trial
from p2p_eval.study.store import session_factory

SLOT_PROTOCOLS = ("2afc", "sequential")  # answers "1" / "2": which slot; the others answer "real" / "fake"
BASE = "http://simulate"  # the in-process app's base URL (never resolved: ASGI transport)


@dataclasses.dataclass(frozen=True)
class TrialView:
    """One trial as a synthetic observer sees it: ``fake_slot`` as stored and ``trial``, the page's JSON."""

    protocol: str
    question: str
    algorithm: str
    kind: str  # practice | main | vigilance
    fake_slot: int
    broken: bool
    display_ms: float
    trial: Mapping[str, Any]


class Observer(abc.ABC):
    """One synthetic participant.  Subclasses define :meth:`p_fooled` (and may refine the rest)."""

    def __init__(self, lapse: float = 0.0) -> None:
        self.lapse = lapse

    @abc.abstractmethod
    def p_fooled(self, view: TrialView) -> float:
        """Probability that the fake of this trial is judged real (lapses aside)."""

    def p_false_alarm(self, view: TrialView) -> float:  # single-image: a real image labelled fake
        return self.p_fooled(view)

    def answer(self, view: TrialView, rng: np.random.Generator) -> str:
        if view.protocol in SLOT_PROTOCOLS:
            if rng.random() < self.lapse:
                return "1" if rng.random() < 0.5 else "2"
            fooled = not view.broken and rng.random() < self.p_fooled(view)
            chosen_fake = (3 - view.fake_slot) if fooled else view.fake_slot
            return str(chosen_fake if view.question == "fake" else 3 - chosen_fake)
        if rng.random() < self.lapse:
            return "real" if rng.random() < 0.5 else "fake"
        if view.fake_slot:  # a fake (or, vigilance, a broken) image
            return "real" if not view.broken and rng.random() < self.p_fooled(view) else "fake"
        return "fake" if rng.random() < self.p_false_alarm(view) else "real"

    def timing(self, view: TrialView, rng: np.random.Generator, clock: float) -> dict[str, float]:
        """The page's timing fields: shown for the requested time, answered after a log-normal time (median 900 ms)."""
        on1, off1 = clock, clock + view.display_ms
        out = {"onset1": on1, "offset1": off1}
        if view.protocol == "2afc":
            out.update(onset2=on1, offset2=off1)
        elif view.protocol == "sequential":
            out.update(onset2=off1, offset2=off1 + view.display_ms)
        out["response_ms"] = float(900.0 * np.exp(0.4 * rng.standard_normal()))
        return out


class Population(abc.ABC):
    """Draws the participants of a simulated study (one :class:`Observer` each)."""

    def check(self, algorithms: list[str], protocol: str) -> None:
        """Raise UserError when this population cannot take a study with these algorithms / protocol."""

    @abc.abstractmethod
    def draw(self, rng: np.random.Generator) -> Observer:
        """A new participant."""

    def expected(self) -> dict[str, dict[str, float]]:  # per algorithm, what ``study report`` should recover
        return {}


def check_rate(value: float, what: str) -> float:
    """``value`` as a float in [0, 1], else UserError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise UserError(f"{what} = {value!r}: a probability must lie in [0, 1]")
    return float(value)


def beta_params(mean: float, sd: float, what: str = "rate") -> tuple[float, float] | None:
    """Beta(a, b) with this mean and sd; None for a point mass (``sd`` = 0); UserError when no Beta has them."""
    if sd < 0:
        raise UserError(f"--sd-between {sd}: must be >= 0")
    if sd == 0:
        return None
    limit = mean * (1 - mean)
    if sd * sd >= limit:
        raise UserError(f"--sd-between {sd}: too large for {what} {mean} (participants' rates must stay in [0, 1]: "
                        f"sd < sqrt(mean * (1 - mean)) = {np.sqrt(limit):.3f})")
    common = limit / (sd * sd) - 1
    return mean * common, (1 - mean) * common


def draw_rates(mean: float, sd: float, rng: np.random.Generator, size: Any = None, what: str = "rate") -> Any:
    """Participants' own rates: Beta with ``mean`` and ``sd`` (probability scale), or ``mean`` when sd = 0."""
    if (params := beta_params(mean, sd, what)) is None:
        return mean if size is None else np.full(size, mean)
    return rng.beta(*params, size=size)


class FoolingObserver(Observer):
    """A participant with a fixed fooling (and false-alarm) probability per algorithm."""

    def __init__(self, fooling: Mapping[str, float], false_alarm: Mapping[str, float], lapse: float = 0.0) -> None:
        super().__init__(lapse)
        self.fooling, self.false_alarm = dict(fooling), dict(false_alarm)

    def p_fooled(self, view: TrialView) -> float:
        return self.fooling[view.algorithm]

    def p_false_alarm(self, view: TrialView) -> float:
        return self.false_alarm[view.algorithm]


class FoolingPopulation(Population):
    """Participants with per-algorithm fooling (and false-alarm) probabilities, their spread and a lapse rate."""

    def __init__(self, fooling: Mapping[str, float], lapse: float = 0.0,
                 sd_between: float | Mapping[str, float] = 0.0, false_alarm: Mapping[str, float] | None = None) -> None:
        if not fooling:
            raise UserError("--fooling: give at least one ALG=RATE")
        self.fooling = {alg: check_rate(v, f"--fooling {alg}") for alg, v in fooling.items()}
        given = self._known(false_alarm or {}, "--false-alarm")
        self.false_alarm = {alg: check_rate(given.get(alg, v), f"--false-alarm {alg}") for alg, v in self.fooling.items()}
        self.lapse = check_rate(lapse, "--lapse")
        sd = self._known(sd_between if isinstance(sd_between, Mapping) else dict.fromkeys(self.fooling, sd_between),
                         "--sd-between")
        self.sd_between = {alg: float(sd.get(alg, 0.0)) for alg in self.fooling}
        for alg in self.fooling:  # fail now, not at the first participant
            beta_params(self.fooling[alg], self.sd_between[alg], f"--fooling {alg}")
            beta_params(self.false_alarm[alg], self.sd_between[alg], f"--false-alarm {alg}")

    def _known(self, given: Mapping[str, float], flag: str) -> dict[str, float]:
        """``given``, whose algorithms must all be in ``--fooling`` (else UserError naming ``flag``)."""
        if unknown := sorted(set(given) - set(self.fooling)):
            raise UserError(f"{flag} {', '.join(unknown)}: not in --fooling ({', '.join(self.fooling)})")
        return dict(given)

    def check(self, algorithms: list[str], protocol: str) -> None:
        if unknown := sorted(set(self.fooling) - set(algorithms)):
            raise UserError(f"--fooling {', '.join(unknown)}: not an algorithm of this study; its algorithms: "
                            f"{', '.join(algorithms)}")
        if missing := [alg for alg in algorithms if alg not in self.fooling]:
            raise UserError(f"--fooling has no rate for {', '.join(missing)}; every algorithm of the study needs one "
                            f"(participants are assigned to all of them): add {', '.join(f'{a}=RATE' for a in missing)}")

    def draw(self, rng: np.random.Generator) -> FoolingObserver:
        fooling = {alg: float(draw_rates(m, self.sd_between[alg], rng)) for alg, m in self.fooling.items()}
        false_alarm = {alg: float(draw_rates(m, self.sd_between[alg], rng)) for alg, m in self.false_alarm.items()}
        return FoolingObserver(fooling, false_alarm, self.lapse)

    def expected(self) -> dict[str, dict[str, float]]:
        """Per algorithm: labeled_real = (1 - lapse) f + lapse / 2; correct_fake = 1 - labeled_real;
        correct_real = (1 - lapse)(1 - false alarm) + lapse / 2 (single-image protocols)."""
        lam = self.lapse
        return {alg: {"labeled_real": (1 - lam) * f + lam / 2, "correct_fake": 1 - ((1 - lam) * f + lam / 2),
                      "correct_real": (1 - lam) * (1 - self.false_alarm[alg]) + lam / 2}
                for alg, f in self.fooling.items()}


class PsychometricObserver(Observer):
    """A HYPE-time participant (Zhou et al. 2019, section 3.1): right with probability 0.5 + 0.5 / (1 + exp(-(t -
    t50) / spread)) on a trial shown t ms; its timing adds a 60 Hz frame interval and the mask."""

    def __init__(self, t50: Mapping[str, float], spread: float, lapse: float = 0.0) -> None:
        super().__init__(lapse)
        self.t50, self.spread = dict(t50), float(spread)

    def p_correct(self, view: TrialView) -> float:  # at the trial's exposure, lapses aside
        return 0.5 + 0.5 / (1.0 + float(np.exp(-(view.display_ms - self.t50[view.algorithm]) / self.spread)))

    def p_fooled(self, view: TrialView) -> float:
        return 1.0 - self.p_correct(view)

    def timing(self, view: TrialView, rng: np.random.Generator, clock: float) -> dict[str, float]:
        out = super().timing(view, rng, clock)
        out["frame_ms"] = 1000.0 / 60.0
        if mask := float(view.trial.get("mask_ms") or 0):
            out.update(mask_onset=out["offset1"], mask_offset=out["offset1"] + mask)
        return out


class PsychometricPopulation(Population):
    """HYPE-time participants: per algorithm ``threshold_ms``, the exposure of the staircase's target accuracy
    (lapses included), logistic of scale ``spread_ms``, thresholds ~ normal sd ``sd_between_ms`` (kept >= 1 ms)."""

    def __init__(self, threshold_ms: Mapping[str, float], spread_ms: float = 80.0, lapse: float = 0.0,
                 sd_between_ms: float = 0.0, down_after: int = 3) -> None:
        if not threshold_ms:
            raise UserError("--threshold-ms: give at least one ALG=MS")
        self.threshold = {alg: float(v) for alg, v in threshold_ms.items()}
        if spread_ms <= 0 or sd_between_ms < 0:
            raise UserError(f"--spread-ms {spread_ms} must be > 0 and --sd-between {sd_between_ms} >= 0 (ms)")
        self.spread, self.sd_between, self.lapse = float(spread_ms), float(sd_between_ms), check_rate(lapse, "--lapse")
        target = 0.5 ** (1.0 / down_after)
        psi = (target - self.lapse / 2) / (1 - self.lapse)  # the lapse-free accuracy the staircase settles on
        if not 0.5 < psi < 1.0:
            raise UserError(f"--lapse {lapse}: too large for a staircase that targets {100 * target:.1f}% correct")
        f = (psi - 0.5) / 0.5
        self.offset = self.spread * float(np.log(f / (1 - f)))  # threshold - t50

    def check(self, algorithms: list[str], protocol: str) -> None:
        if protocol != "hype-time":
            raise UserError(f"--threshold-ms simulates HYPE-time participants; this study is {protocol} (use --fooling)")
        missing = [alg for alg in algorithms if alg not in self.threshold]
        unknown = sorted(set(self.threshold) - set(algorithms))
        if missing or unknown:
            raise UserError(f"--threshold-ms needs exactly the study's algorithms ({', '.join(algorithms)}); "
                            f"missing: {', '.join(missing) or 'none'}, unknown: {', '.join(unknown) or 'none'}")

    def draw(self, rng: np.random.Generator) -> PsychometricObserver:
        t50 = {alg: max(1.0, value + (self.sd_between * float(rng.standard_normal()) if self.sd_between else 0.0))
               - self.offset for alg, value in self.threshold.items()}
        return PsychometricObserver(t50, self.spread, self.lapse)

    def expected(self) -> dict[str, dict[str, float]]:  # the target's exposure (HYPE's mode: within a rung)
        return {alg: {"hype_time_ms": t} for alg, t in self.threshold.items()}


def _parse_pairs(text: str | None, what: str, unit: str, check: Any) -> dict[str, float]:
    """``"l1=X,l1_cgan=Y"`` -> ``{"l1": X, "l1_cgan": Y}``, each value through ``check(value, name)``."""
    out: dict[str, float] = {}
    for item in (t.strip() for t in (text or "").split(",")):
        alg, sep, value = (part.strip() for part in item.partition("="))
        if not item:
            continue
        if not sep or not alg:
            raise UserError(f"{what} {item!r}: write ALG={unit}, e.g. {what} l1={unit},l1_cgan={unit}")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"{what} {item!r}: {value!r} is not a number (write ALG={unit})") from None
        if alg in out:
            raise UserError(f"{what}: {alg} given twice")
        out[alg] = check(number, f"{what} {alg}")
    return out


def _check_ms(value: float, what: str) -> float:
    if not value > 0:
        raise UserError(f"{what} = {value}: write ALG=MS with MS > 0")
    return value


def parse_ms(text: str | None, what: str) -> dict[str, float]:
    """``"l1=250,l1_cgan=400"`` -> ``{"l1": 250.0, "l1_cgan": 400.0}`` (milliseconds > 0)."""
    return _parse_pairs(text, what, "MS", _check_ms)


def parse_rates(text: str | None, what: str) -> dict[str, float]:
    """``"l1=0.05,l1_cgan=0.19"`` -> ``{"l1": 0.05, "l1_cgan": 0.19}``."""
    return _parse_pairs(text, what, "RATE", check_rate)


def parse_sd(text: str) -> float | dict[str, float]:
    """``--sd-between``: ``"0.1"`` (all algorithms) or ``"l1=0.02,l1_cgan=0.17"`` (per algorithm)."""
    if "=" in text:
        return parse_rates(text, "--sd-between")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--sd-between {text!r}: write a number (0.1) or ALG=SD pairs (l1=0.02,l1_cgan=0.17)") from None
    if not 0 <= value <= 0.5:
        raise UserError(f"--sd-between {text}: a standard deviation of probabilities lies in [0, 0.5]")
    return value


@dataclasses.dataclass
class SimulationResult:
    """What a simulated run did, and the rates the report should recover (``already_done``: resumed sessions)."""

    study: str
    protocol: str
    participants: int
    sessions: dict[str, int]
    answers: int
    already_done: int
    expected: dict[str, dict[str, float]]


def _truth(engine: Engine, token: str) -> tuple[str, dict[int, tuple[str, int, bool]]]:
    """The algorithm of session ``token`` and (kind, fake slot, broken) of its trials by index, from the database."""
    with session_factory(engine)() as db, db.begin():
        session = db.scalar(select(Session).where(Session.token == token))
        algorithm = db.scalar(select(Algorithm.name).where(Algorithm.id == session.algorithm_id))
        rows = db.execute(select(Trial.index, Trial.kind, Trial.fake_slot, Trial.broken)
                          .where(Trial.session_id == session.id)).all()
    return algorithm, {i: (kind, slot, bool(broken)) for i, kind, slot, broken in rows}


async def take_part(client: Any, study: str, arrival: dict[str, Any], observer: Observer, rng: np.random.Generator,
                    engine: Engine, images: bool) -> tuple[str, int]:
    """One synthetic participant through the page's requests (check, start, then per trial: the trial, its
    images when ``images``, the answer); returns (algorithm, answers posted); UserError when refused."""

    async def call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if (r := await client.request(method, url, json=body)).status_code != 200:
            raise UserError(f"simulated participant {arrival['PROLIFIC_PID']} was refused by the study server: "
                            f"{method} {url}: {r.status_code} {r.text}")
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else {}

    await call("POST", f"/api/studies/{study}/check", arrival)
    state = await call("POST", f"/api/studies/{study}/sessions", arrival)
    token, index, answers, clock = state["session"], state["next_index"], 0, 1000.0
    algorithm, plan = _truth(engine, token)
    while index < state["total"]:
        trial = await call("GET", f"/api/s/{token}/trial/{index}")
        if trial["done"]:  # the server skipped the remaining trials (an image it could not serve)
            break
        index = trial["index"]  # later than asked when the server skipped a trial
        for url in trial["images"] if images else []:
            await call("GET", url)
        kind, fake_slot, broken = plan[index]
        shown = float(trial.get("display_ms") or state["display_ms"])
        view = TrialView(state["protocol"], state["question"], algorithm, kind, fake_slot, broken, shown, trial)
        value, timing = observer.answer(view, rng), observer.timing(view, rng, clock)
        clock += 2 * shown + timing["response_ms"] + 1500.0
        ack = await call("POST", f"/api/s/{token}/answer", {"index": index, "answer": value, **timing})
        index, answers = ack["next_index"], answers + 1
    return algorithm, answers


def simulate(engine: Engine, study: str, participants: int, population: Population, seed: int = 0,
             images: bool = True, progress: bool = True, prefix: str = "sim") -> SimulationResult:
    """Run ``participants`` synthetic participants (Prolific ids ``{prefix}-{seed}-{i}``, generators
    ``np.random.default_rng([seed, i])``) through ``study`` over the in-process HTTP API."""
    import httpx
    from tqdm.auto import tqdm

    from p2p_eval.study.server import create_app

    if isinstance(participants, bool) or not isinstance(participants, int) or participants < 1:
        raise UserError(f"--participants {participants!r}: must be a whole number >= 1")
    with session_factory(engine)() as db, db.begin():
        if (found := db.scalar(select(Study).where(Study.name == study))) is None:
            names = ", ".join(db.scalars(select(Study.name).order_by(Study.id))) or "none"
            raise UserError(f"--study {study!r}: no such study in this database; studies: {names}")
        protocol, algorithms = found.protocol, [a.name for a in found.algorithms]
    population.check(algorithms, protocol)
    sessions, counts = dict.fromkeys(algorithms, 0), {"answers": 0, "already_done": 0}

    async def run() -> None:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60.0) as client:
            for i in tqdm(range(participants), desc=f"simulate {study}", unit="participant",
                          disable=None if progress else True):
                rng = np.random.default_rng([seed, i])
                observer = population.draw(rng)
                arrival = {"PROLIFIC_PID": f"{prefix}-{seed}-{i}", "STUDY_ID": "simulate",
                           "SESSION_ID": f"{prefix}-{seed}", "consent": True}
                algorithm, answers = await take_part(client, study, arrival, observer, rng, engine, images)
                counts["answers"] += answers
                sessions[algorithm] += answers > 0  # none: the participant had finished in an earlier run
                counts["already_done"] += answers == 0

    asyncio.run(run())
    return SimulationResult(study=study, protocol=protocol, participants=participants, sessions=sessions,
                            answers=counts["answers"], already_done=counts["already_done"],
                            expected=population.expected())


def format_result(result: SimulationResult) -> str:
    """Lines for the terminal: sessions per algorithm and the rates ``study report`` should recover."""
    lines = [f"simulated {count(result.participants, 'participant')} on study {result.study} ({result.protocol}): "
             f"{result.answers} answers posted"
             + (f"; {result.already_done} had finished already (same ids: a rerun resumes them; use another --seed)"
                if result.already_done else "")]
    single = result.protocol not in SLOT_PROTOCOLS
    for alg, n in result.sessions.items():
        exp = result.expected.get(alg, {})
        line = f"  {alg}: {n} new sessions"
        if "hype_time_ms" in exp:
            line += f"; expected HYPE-time threshold ~{exp['hype_time_ms']:.0f} ms (the staircase's 79.4% point)"
        if "labeled_real" in exp:
            line += f"; expected % labeled real {100 * exp['labeled_real']:.1f}%"
            if single:
                line += (f", % correct real {100 * exp['correct_real']:.1f}%, "
                         f"% correct fake {100 * exp['correct_fake']:.1f}%")
        lines.append(line)
    return "\n".join(lines)
