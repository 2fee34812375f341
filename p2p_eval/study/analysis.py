"""Analysis of a study's database: the paper's "% labeled real +- SE" (pix2pix Tables 4-5) and more.

Per algorithm, over participants who completed their session and passed the vigilance rule fixed when the
study was created (at most ``vigilance_max_errors`` failed vigilance trials), practice and vigilance trials
left out:

- the rate is the mean of per-participant rates ("% of trials where the fake was judged real");
- SE = sample standard deviation of the per-participant rates / sqrt(participants) (ddof = 1);
- the 95% CI is the 2.5 / 97.5 percentile of a two-level bootstrap (Davison & Hinkley 1997, section 3.8):
  participants are resampled with replacement, then each resampled participant's trials are resampled
  with replacement.  Resampling n Bernoulli trials with k successes is drawing Binomial(n, k/n), which is
  how it is vectorised here.  Resampling both levels adds the within-participant variance a second time,
  so the interval is somewhat conservative when participants differ little;
- pairwise P(A > B) is the share of bootstrap replicates in which A's rate exceeds B's (ties count half),
  the two algorithms' participants being independent groups.

For ``single`` (one image per trial), per algorithm: % correct for the real images and for the fake images
(each a mean of per-participant rates with SE and CI), as seed 004's Table I; "labeled real" is then the
share of fake images labelled real.

The report also states how the images were served (the study's same-processing option), the trials the
server skipped because it could not serve an image (with the reasons), and the re-views: trials whose image
was requested more than once (a reload, or a script fetching it again), which are kept in the rates but
counted, so that a reader can judge them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from p2p_eval.errors import UserError
from p2p_eval.study.models import Algorithm, Image, Session, Study, Trial
from p2p_eval.study.plan import processing_of
from p2p_eval.study.store import session_factory

N_BOOT = 2000


def two_level_bootstrap(k: np.ndarray, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean per-participant rate; participant i had ``k[i]`` of ``n[i]``."""
    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    idx = rng.integers(0, len(n), size=(n_boot, len(n)))
    draws = rng.binomial(n[idx], k[idx] / n[idx])
    return (draws / n[idx]).mean(axis=1)


def summarise(k: np.ndarray, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    """Mean per-participant rate, SE, 95% CI and the bootstrap replicates (empty when no participant)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    if len(n) == 0:
        return {"rate": None, "se": None, "ci95": None, "participants": 0, "trials": 0}, np.empty(0)
    rates = k / n
    se = float(rates.std(ddof=1) / np.sqrt(len(rates))) if len(rates) > 1 else None
    boot = two_level_bootstrap(k, n, n_boot, rng)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rate": float(rates.mean()), "se": se, "ci95": [float(lo), float(hi)], "participants": int(len(n)),
            "trials": int(n.sum())}, boot


def prob_greater(a: np.ndarray, b: np.ndarray) -> float:
    """Share of paired bootstrap replicates with a > b (ties count half)."""
    return float(np.mean(a > b) + 0.5 * np.mean(a == b))


def trials_frame(engine: Engine, study_name: str) -> pd.DataFrame:
    """Every planned trial of the study, one row each (answered or not), joined with its session."""
    img1, img2 = aliased(Image), aliased(Image)
    with session_factory(engine)() as db, db.begin():
        study = db.scalar(select(Study).where(Study.name == study_name))
        if study is None:
            names = db.scalars(select(Study.name)).all()
            raise UserError(f"no study named {study_name!r} in this database; studies: {', '.join(names) or 'none'}")
        rows = db.execute(
            select(Session.id.label("session_id"), Session.participant, Session.source, Session.assignment_id,
                   Session.hit_id, Session.external_study_id, Session.external_session_id,
                   Algorithm.name.label("algorithm"), Session.completed_at, Trial.index.label("trial_index"),
                   Trial.kind, Trial.img1_id.label("image1_id"), img1.path.label("image1_file"),
                   Trial.img2_id.label("image2_id"), img2.path.label("image2_file"), Trial.fake_slot, Trial.broken,
                   Trial.answer, Trial.correct, Trial.judged_real, Trial.onset1, Trial.offset1, Trial.onset2,
                   Trial.offset2, Trial.response_ms, Trial.views, Trial.fetches1, Trial.fetches2, Trial.skip_reason,
                   Trial.answered_at, Session.user_agent,
                   Session.screen_w, Session.screen_h)
            .join(Session, Trial.session_id == Session.id).join(Algorithm, Session.algorithm_id == Algorithm.id)
            .join(img1, Trial.img1_id == img1.id).join(img2, Trial.img2_id == img2.id, isouter=True)
            .where(Session.study_id == study.id).order_by(Session.id, Trial.index)).all()
    frame = pd.DataFrame(rows, columns=["session_id", "participant", "source", "assignment_id", "hit_id",
                                        "external_study_id", "external_session_id", "algorithm", "completed_at",
                                        "trial_index", "kind", "image1_id", "image1_file", "image2_id",
                                        "image2_file", "fake_slot", "broken", "answer", "correct", "judged_real",
                                        "onset1", "offset1", "onset2", "offset2", "response_ms", "views",
                                        "fetches1", "fetches2", "skip_reason", "answered_at", "user_agent", "screen_w", "screen_h"])
    frame.insert(0, "protocol", study.protocol)
    frame.insert(0, "study", study.name)
    frame["practice"] = frame["kind"] == "practice"
    frame["vigilance"] = frame["kind"] == "vigilance"
    frame["shown1_ms"] = frame["offset1"] - frame["onset1"]
    frame["shown2_ms"] = frame["offset2"] - frame["onset2"]
    frame["re_views"] = (frame["fetches1"] - 1).clip(lower=0) + (frame["fetches2"] - 1).clip(lower=0)
    return frame


def analyse(engine: Engine, study_name: str, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The study's report as a JSON-able dict (see the module docstring for the statistics)."""
    with session_factory(engine)() as db, db.begin():
        study = db.scalar(select(Study).where(Study.name == study_name))
        algorithms = [a.name for a in study.algorithms] if study is not None else []
        served = processing_of(study).describe() if study is not None else None
    frame = trials_frame(engine, study_name)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"study": study.name, "protocol": study.protocol, "question": study.question,
                           "paired": study.paired, "bootstrap": n_boot, "seed": seed,
                           "exclusion_rule": f"more than {study.vigilance_max_errors} of {study.vigilance} "
                                             "vigilance trials wrong",
                           "served_images": served, "algorithms": {}, "pairwise": [],
                           "skipped": {"trials": int(frame["skip_reason"].notna().sum()),
                                       "reasons": {str(k): int(v) for k, v in frame["skip_reason"].value_counts().items()}},
                           "re_views": {"trials": int((frame["re_views"] > 0).sum()),
                                        "extra_requests": int(frame["re_views"].sum())}}
    boots: dict[str, np.ndarray] = {}
    for alg in algorithms:
        rows = frame[frame["algorithm"] == alg]
        sessions = rows.groupby("session_id")
        complete = sessions["completed_at"].first().notna()
        wrong_vigilance = (rows["vigilance"] & rows["correct"].eq(False)).groupby(rows["session_id"]).sum()
        failed = wrong_vigilance.reindex(complete.index) > study.vigilance_max_errors
        included = complete.index[complete & ~failed]
        main = rows[(rows["kind"] == "main") & rows["session_id"].isin(included) & rows["answer"].notna()]
        entry: dict[str, Any] = {"sessions": int(len(complete)), "incomplete": int((~complete).sum()),
                                 "excluded_vigilance": int((complete & failed).sum()), "included": int(len(included)),
                                 "skipped_trials": int(rows["skip_reason"].notna().sum()),
                                 "re_viewed_trials": int((rows["re_views"] > 0).sum())}
        if study.protocol == "single":
            for group, is_fake in (("real", 0), ("fake", 1)):
                part = main[main["fake_slot"] == is_fake].groupby("session_id")["correct"].agg(["sum", "count"])
                entry[f"correct_{group}"], _ = summarise(part["sum"].to_numpy(), part["count"].to_numpy(), n_boot, rng)
            fakes = main[main["fake_slot"] == 1]
        else:
            fakes = main
        per = fakes.groupby("session_id")["judged_real"].agg(["sum", "count"])
        entry["labeled_real"], boots[alg] = summarise(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot, rng)
        out["algorithms"][alg] = entry
    for i, a in enumerate(algorithms):
        for b in algorithms[i + 1:]:
            if len(boots[a]) and len(boots[b]):
                out["pairwise"].append({"a": a, "b": b, "p_a_gt_b": prob_greater(boots[a], boots[b])})
    return out


def _pct(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("rate") is None:
        return "n/a"
    se = f" +- {100 * stat['se']:.1f}" if stat["se"] is not None else ""
    lo, hi = stat["ci95"]
    return f"{100 * stat['rate']:.1f}%{se} [{100 * lo:.1f}, {100 * hi:.1f}]"


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""
    lines = [f"study {report['study']} ({report['protocol']}, question: which is {report['question']}; "
             f"excluded when {report['exclusion_rule']}; 95% CI: two-level bootstrap, {report['bootstrap']} draws)"]
    single = report["protocol"] == "single"
    head = "algorithm | included | excluded (vigilance) | incomplete | % labeled real +- SE [95% CI]"
    lines.append(head + (" | % correct real | % correct fake" if single else ""))
    for alg, e in report["algorithms"].items():
        row = f"{alg} | {e['included']} | {e['excluded_vigilance']} | {e['incomplete']} | {_pct(e['labeled_real'])}"
        if single:
            row += f" | {_pct(e['correct_real'])} | {_pct(e['correct_fake'])}"
        lines.append(row)
    for p in report["pairwise"]:
        lines.append(f"P({p['a']} > {p['b']}) = {p['p_a_gt_b']:.3f}")
    lines.append(f"served images: same processing {report['served_images']}")
    per_alg = ", ".join(f"{alg} {e['re_viewed_trials']}" for alg, e in report["algorithms"].items())
    lines.append(f"re-views (an image requested again while its trial was open; kept in the rates): "
                 f"{report['re_views']['trials']} trials, {report['re_views']['extra_requests']} extra requests"
                 + (f" ({per_alg})" if report["re_views"]["trials"] else ""))
    skipped = report["skipped"]
    lines.append(f"skipped by the server (an image it could not serve): {skipped['trials']} trials"
                 + "".join(f"\n  {n} x {reason}" for reason, n in skipped["reasons"].items()))
    return "\n".join(lines)


def report(engine: Engine, study_name: str, json_out: str | Path | None = None, csv_out: str | Path | None = None,
           n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Analyse ``study_name``; write the JSON report and the per-trial CSV when asked."""
    from p2p_eval.fsutil import atomic_write_text

    result = analyse(engine, study_name, n_boot=n_boot, seed=seed)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
    if csv_out is not None:
        atomic_write_text(csv_out, trials_frame(engine, study_name).to_csv(index=False))
    return result
