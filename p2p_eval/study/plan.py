"""Studies and trial plans.

A study registers the real folder and one folder per algorithm; each participant's plan is drawn from the study
seed and the participant id and stored before the first trial.  Protocols: ``2afc`` (side by side, pix2pix /
Zhang et al.), ``sequential`` (one after the other, the public AMT code), and one image, real or fake 50/50:
``single``, HYPE's (:mod:`p2p_eval.study.hype`) ``hype-time`` and ``hype-inf``.  Practice trials come first
(feedback, excluded from results); vigilance trials (an obviously broken image) are mixed into the test block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from p2p_eval.errors import UserError, require_dir, require_file
from p2p_eval.study import PROTOCOLS, SINGLE_IMAGE
from p2p_eval.study.hype import HypeTimeParams, assign_staircases
from p2p_eval.study.images import DEFAULT_QUALITY, DEFAULT_SIZE, Processing, require_decodable
from p2p_eval.study.models import Algorithm, Image, Study
from p2p_eval.study.store import session_factory

HYPE_KEYS = ("exposures_ms", "staircases", "staircase_order", "start_ms", "staircase_down", "mask_ms")
QUESTIONS = ("fake", "real")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass
class StudySpec:
    """Everything fixed when a study is created (the CLI flags / TOML keys of ``study create``)."""

    name: str
    real: str
    fake: dict[str, str]
    protocol: str = "2afc"
    paired: bool = False
    trials: int = 40
    practice: int = 10
    display_ms: int = 1000
    vigilance: int = 0
    vigilance_max_errors: int = 0
    question: str = "fake"
    seed: int = 0
    redirect_url: str | None = None
    same_processing: bool = True  # serve every image at serve_size x serve_size as JPEG at jpeg_quality
    serve_size: int = DEFAULT_SIZE
    jpeg_quality: int = DEFAULT_QUALITY
    allow_repeats: bool = False  # paired: accept fewer pairs than practice + trials (pairs then repeat)
    max_participants: int | None = None  # sessions per algorithm; later arrivals are told the study is full
    consent: str | None = None  # consent text, agreed to before the instructions (none: no consent page)
    instructions: str | None = None  # the lab's instruction text, shown above the protocol's own
    answer_ms: int | None = None  # the answer window (None: unlimited); a missed answer counts as wrong
    # hype-time only (None: the defaults of p2p_eval.study.hype.HypeTimeParams)
    exposures_ms: list[int] | None = None
    staircases: int | None = None
    staircase_order: str | None = None
    start_ms: int | None = None
    staircase_down: int | None = None
    mask_ms: int | None = None

    def hype_params(self) -> HypeTimeParams:
        """The hype-time staircase of this spec (defaults for the keys not given); validated."""
        given = {"exposures_ms": tuple(self.exposures_ms) if isinstance(self.exposures_ms, list | tuple)
                 else self.exposures_ms,
                 "staircases": self.staircases, "order": self.staircase_order, "start_ms": self.start_ms,
                 "down_after": self.staircase_down, "mask_ms": self.mask_ms}
        params = HypeTimeParams(**{k: v for k, v in given.items() if v is not None})
        params.validate()
        return params

    def validate(self) -> None:
        """Raise UserError naming the bad setting and how to fix it."""
        if not NAME_RE.match(self.name):
            raise UserError(f"study name {self.name!r}: use 1-64 letters, digits, '_', '-', '.'")
        if self.protocol not in PROTOCOLS:
            raise UserError(f"--protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if self.question not in QUESTIONS:
            raise UserError(f"--question {self.question!r}: choose fake or real")
        if not isinstance(self.fake, dict) or not all(isinstance(v, str) for v in self.fake.values()):
            raise UserError("fake must map algorithm names to folders (--images ALG=DIR)")
        if not self.fake:
            raise UserError("no --images ALG=DIR given: a study compares at least one algorithm with the real images")
        for alg in self.fake:
            if not NAME_RE.match(alg):
                raise UserError(f"--images {alg!r}: algorithm names use 1-64 letters, digits, '_', '-', '.'")
        for key in ("trials", "practice", "display_ms", "vigilance", "vigilance_max_errors", "seed", "serve_size",
                    "jpeg_quality", "paired", "same_processing", "allow_repeats"):
            value, boolean = getattr(self, key), key in ("paired", "same_processing", "allow_repeats")
            if not isinstance(value, bool if boolean else int) or (isinstance(value, bool) and not boolean):
                raise UserError(f"{key} must be {'true or false' if boolean else 'an integer'}, not {value!r}")
        if self.trials < 1 or self.practice < 0 or self.vigilance < 0 or self.vigilance_max_errors < 0:
            raise UserError("--trials must be >= 1; --practice, --vigilance, --vigilance-max-errors >= 0")
        for key, low, high, unit in (("display_ms", 50, 60_000, "milliseconds"), ("serve_size", 16, 4096, "pixels"),
                                     ("jpeg_quality", 1, 95, "(PIL's JPEG quality scale)")):
            if not low <= getattr(self, key) <= high:
                raise UserError(f"--{key.replace('_', '-')} {getattr(self, key)}: use {low}..{high} {unit}")
        hype_given = [k for k in HYPE_KEYS if getattr(self, k) is not None]
        if self.protocol == "hype-time":
            if self.trials < (staircases := self.hype_params().staircases):
                raise UserError(f"--trials {self.trials}: hype-time needs at least one test trial per staircase "
                                f"({staircases} staircases)")
        elif hype_given:
            raise UserError(f"{', '.join(hype_given)}: staircase settings apply to --protocol hype-time only "
                            f"(this study is {self.protocol})")
        if self.max_participants is not None and (type(self.max_participants) is not int or self.max_participants < 1):
            raise UserError(f"max_participants {self.max_participants!r}: give a whole number >= 1 (per algorithm)")
        if self.answer_ms is not None and (type(self.answer_ms) is not int or not 500 <= self.answer_ms <= 60_000):
            raise UserError(f"answer_ms (--answer-ms) {self.answer_ms!r}: use 500..60000 milliseconds")
        for key in ("consent", "instructions"):
            text = getattr(self, key)
            if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > 20_000):
                raise UserError(f"{key}: give the text as a TOML string of 1-20000 characters")
        if self.redirect_url is not None and not re.match(r"^https?://[^\s<>\"']+$", self.redirect_url):
            raise UserError(f"--redirect-url {self.redirect_url!r}: must be an http(s):// URL without spaces or quotes")


def load_spec(config: str | Path | None, overrides: dict[str, Any]) -> StudySpec:
    """A StudySpec from ``config`` (TOML with the same keys; ``fake`` a table ALG = "DIR") and the flags that
    are not None (they override the file)."""
    values: dict[str, Any] = {}
    if config is not None:
        path = require_file(config, "study config")
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from None
        fields = {f.name for f in dataclasses.fields(StudySpec)}
        if unknown := sorted(set(values) - fields):
            raise UserError(f"{path}: unknown keys {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("name", "real", "fake"):
        if not values.get(key):
            raise UserError(f"study {key} missing: give --{key} (or `{key} = ...` in the --config file)")
    if not isinstance(values["fake"], dict):
        raise UserError("fake must map algorithm names to folders (TOML: [fake] ALG = \"DIR\")")
    return StudySpec(**values)


def parse_fake(items: list[str] | None) -> dict[str, str] | None:
    """``["ALG=DIR", ...]`` -> ``{"ALG": "DIR"}``; None when no item was given."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        alg, sep, folder = item.partition("=")
        if not sep or not alg or not folder:
            raise UserError(f"--images {item!r}: write ALG=DIR, e.g. --images l1_cgan=runs/l1_cgan/val")
        if alg in out:
            raise UserError(f"--images {alg!r} given twice")
        out[alg] = folder
    return out


def list_folder(folder: str | Path, what: str) -> list[Path]:
    """Absolute image paths directly inside ``folder`` (:func:`p2p_eval.imageio.list_images`); never none."""
    from p2p_eval.imageio import IMAGE_SUFFIXES, list_images  # imports torch: only when a study is created

    root = require_dir(folder, what).resolve()
    if not (files := list_images(root, what)):
        raise UserError(f"{what} {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def token_hash(token: str) -> str:
    """SHA-256 hex digest of an admin token (only the digest is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_pairs(spec: StudySpec, real_files: list[Path], fake_files: dict[str, list[Path]]) -> list[str]:
    """A paired study's pair counts as notes (one per algorithm); UserError when an algorithm has no pair, or
    fewer pairs than a participant's practice + test trials need and ``allow_repeats`` is off."""
    real_stems, need, notes = {p.stem for p in real_files}, spec.practice + spec.trials, []
    for alg, files in fake_files.items():
        if not (kept := len(real_stems & {p.stem for p in files})):
            raise UserError(f"--paired: no file of --images {alg} ({spec.fake[alg]}) shares a name with the "
                            f"--real folder ({spec.real}); paired studies match real and fake by file stem")
        note = (f"--paired: {alg}: kept {kept} pairs ({kept} of {len(files)} generated images share a file name "
                f"with one of the {len(real_files)} real images)")
        if spec.protocol not in SINGLE_IMAGE and kept < need:
            if not spec.allow_repeats:
                raise UserError(f"{note}, but each participant needs {need} ({spec.practice} practice + "
                                f"{spec.trials} test trials); add images with matching names, lower --trials / "
                                "--practice, or pass --allow-repeats to reuse pairs")
            note += f"; each participant sees some pairs more than once ({need} trials, --allow-repeats)"
        notes.append(note)
    return notes


def processing_of(study: Study) -> Processing:
    return Processing(size=study.serve_size, quality=study.jpeg_quality) if study.same_processing else Processing()


def create_study(engine: Engine, spec: StudySpec, notes: list[str] | None = None) -> tuple[Study, str]:
    """Register the study and its images (each decoded first); return it and its admin token (shown once, stored
    hashed).  A paired study's pair counts are appended to ``notes`` when it is given."""
    spec.validate()
    real_files = list_folder(spec.real, "--real folder")
    fake_files = {alg: list_folder(folder, f"--images {alg} folder") for alg, folder in spec.fake.items()}
    lines = check_pairs(spec, real_files, fake_files) if spec.paired else []
    if notes is not None:
        notes.extend(lines)
    require_decodable(real_files, "--real folder", Path(spec.real).resolve())
    for alg, files in fake_files.items():
        require_decodable(files, f"--images {alg} folder", Path(spec.fake[alg]).resolve())
    token = secrets.token_urlsafe(24)
    study = Study(name=spec.name, protocol=spec.protocol, paired=spec.paired, question=spec.question,
                  trials=spec.trials, practice=spec.practice, display_ms=spec.display_ms, vigilance=spec.vigilance,
                  vigilance_max_errors=spec.vigilance_max_errors, seed=spec.seed, redirect_url=spec.redirect_url,
                  real_dir=str(Path(spec.real).resolve()), token_sha256=token_hash(token),
                  same_processing=spec.same_processing, serve_size=spec.serve_size, jpeg_quality=spec.jpeg_quality,
                  protocol_params=spec.hype_params().to_json() if spec.protocol == "hype-time" else None,
                  max_participants=spec.max_participants, consent=spec.consent, instructions=spec.instructions,
                  answer_ms=spec.answer_ms)
    with session_factory(engine)() as db:
        try:
            with db.begin():
                if db.scalar(select(Study.id).where(Study.name == spec.name)) is not None:
                    raise UserError(f"a study named {spec.name!r} already exists in this database; pick another --name")
                db.add(study)
                db.flush()
                db.add_all(Image(study_id=study.id, algorithm_id=None, stem=p.stem, path=str(p)) for p in real_files)
                for alg, files in fake_files.items():
                    algorithm = Algorithm(study_id=study.id, name=alg, folder=str(Path(spec.fake[alg]).resolve()))
                    db.add(algorithm)
                    db.flush()
                    db.add_all(Image(study_id=study.id, algorithm_id=algorithm.id, stem=p.stem, path=str(p)) for p in files)
        except IntegrityError:
            raise UserError(f"a study named {spec.name!r} already exists in this database; pick another --name") from None
    return study, token


@dataclasses.dataclass
class PlannedTrial:
    """One trial of a plan: image ids per slot, the fake slot, its kind, and (hype-time) its staircase."""

    kind: str  # practice | main | vigilance
    img1: int
    img2: int | None
    fake_slot: int
    broken: bool = False
    staircase: int | None = None


class _Cycle:
    """Draws items without replacement, reshuffling after each pass."""

    def __init__(self, items: list, rng: random.Random) -> None:
        self.items, self.rng, self.queue = list(items), rng, []

    def next(self):  # noqa: ANN201 - item type of the list
        if not self.queue:
            self.queue = self.items[:]
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def draw_plan(study: Study, real: dict[str, int], fake: dict[str, int], participant: str) -> list[PlannedTrial]:
    """The trial plan of one participant (seeded by the study seed and the participant id); ``real``/``fake``
    map file stems to image ids.  ``hype-time``: each test trial gets a staircase, not an exposure."""
    rng = random.Random(f"{study.seed}:{participant}")
    stems_paired = sorted(set(real) & set(fake))
    pairs = _Cycle([(real[s], fake[s]) for s in stems_paired], rng) if study.paired else None
    reals, fakes = _Cycle(sorted(real.values()), rng), _Cycle(sorted(fake.values()), rng)

    def block(kind: str, count: int) -> list[PlannedTrial]:
        if study.protocol in SINGLE_IMAGE:  # real or fake 50/50, balanced within the block
            truths = [1] * (count // 2) + [0] * (count - count // 2)
            rng.shuffle(truths)
            return [PlannedTrial(kind, fakes.next() if t else reals.next(), None, t) for t in truths]
        slots = [1, 2] * (count // 2) + ([rng.choice([1, 2])] if count % 2 else [])
        rng.shuffle(slots)
        return [_slotted(kind, slot, *(pairs.next() if pairs is not None else (reals.next(), fakes.next())))
                for slot in slots]

    practice = block("practice", study.practice)
    main = block("main", study.trials)
    if study.protocol == "hype-time":
        params = HypeTimeParams.from_json(study.protocol_params)
        for trial, staircase in zip(main, assign_staircases(len(main), params, rng)):
            trial.staircase = staircase
    for _ in range(study.vigilance):
        if study.protocol in SINGLE_IMAGE:
            trial = PlannedTrial("vigilance", fakes.next(), None, 1, broken=True)
        else:
            trial = _slotted("vigilance", rng.choice([1, 2]), reals.next(), fakes.next(), broken=True)
        main.insert(rng.randint(1, len(main)), trial)
    return practice + main


def _slotted(kind: str, slot: int, real: int, fake: int, broken: bool = False) -> PlannedTrial:
    return PlannedTrial(kind, fake if slot == 1 else real, real if slot == 1 else fake, slot, broken)
