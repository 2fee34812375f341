"""Analysis of a study's database: the paper's "% labeled real +- SE" (pix2pix Tables 4-5) and more.

Per algorithm, over the included participants (:mod:`p2p_eval.study.lab`), test trials only: the rate is the
mean of per-participant rates, its SE their sample sd / sqrt(participants); the 95% CI the percentiles of a
two-level bootstrap (Davison & Hinkley 1997, section 3.8: participants, then each one's trials as
Binomial(n, k/n); somewhat conservative); pairwise P(A > B) the share of replicates with A's rate above B's
(ties count half); ``single`` adds % correct on real and fake images (the quick-response study's Table I).
Trials off their display time (:mod:`p2p_eval.study.timing`) or answered unseen are left out and counted.
HYPE (:mod:`p2p_eval.study.hype`): ``hype-time`` (section 3.1) scores a participant by the mean of their
staircases' modal exposures, an algorithm by the mean over participants (bootstrap CI over participants);
``hype-inf`` (section 3.2) by the error rate (50% = indistinguishable) on all, fake and real images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from p2p_eval.errors import UserError, count
from p2p_eval.study.models import Algorithm, Image, Session, Study, Trial
from p2p_eval.study import timing
from p2p_eval.study.lab import REASONS, format_excluded, participants
from p2p_eval.study.hype import HypeTimeParams, StaircaseResult, evaluator_threshold, target_correct
from p2p_eval.study.plan import SINGLE_IMAGE, processing_of
from p2p_eval.study.store import session_factory

N_BOOT = 2000


def two_level_bootstrap_many(k: np.ndarray, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean per-participant rate of many data sets at once: in set s, participant
    i had ``k[s, i]`` of ``n[s, i]``; ``k``, ``n`` of shape (sets, participants) -> replicates (sets, n_boot)."""
    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    sets, people = n.shape
    idx = rng.integers(0, people, size=(sets, n_boot, people))
    rows = np.arange(sets)[:, None, None]
    nn = n[rows, idx]
    draws = rng.binomial(nn, k[rows, idx] / nn)
    return (draws / nn).mean(axis=2)


def two_level_bootstrap(k: np.ndarray, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean per-participant rate; participant i had ``k[i]`` of ``n[i]``."""
    return two_level_bootstrap_many(np.asarray(k)[None], np.asarray(n)[None], n_boot, rng)[0]


def summarise(k: np.ndarray, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    """Mean per-participant rate, SE, 95% CI and the bootstrap replicates (empty when no participant)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    k, n = k[n > 0], n[n > 0]
    if len(n) == 0:
        return {"rate": None, "se": None, "ci95": None, "participants": 0, "trials": 0}, np.empty(0)
    rates = k / n
    se = float(rates.std(ddof=1) / np.sqrt(len(rates))) if len(rates) > 1 else None
    boot = two_level_bootstrap(k, n, n_boot, rng)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rate": float(rates.mean()), "se": se, "ci95": [float(lo), float(hi)], "participants": int(len(n)),
            "trials": int(n.sum())}, boot


def _rates(trials: pd.DataFrame, column: str, n_boot: int, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    per = trials.groupby("session_id")[column].agg(["sum", "count"])  # per participant: true / all
    return summarise(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot, rng)


def prob_greater(a: np.ndarray, b: np.ndarray) -> float:
    """Share of paired bootstrap replicates with a > b (ties count half)."""
    return float(np.mean(a > b) + 0.5 * np.mean(a == b))


def trials_frame(engine: Engine, study_name: str) -> pd.DataFrame:
    """Every planned trial of the study, one row each (answered or not), joined with its session."""
    img1, img2 = aliased(Image), aliased(Image)
    with session_factory(engine)() as db, db.begin():
        if (study := db.scalar(select(Study).where(Study.name == study_name))) is None:
            names = db.scalars(select(Study.name)).all()
            raise UserError(f"no study named {study_name!r} in this database; studies: {', '.join(names) or 'none'}")
        result = db.execute(
            select(Session.id.label("session_id"), Session.participant, Session.source, Session.completion_code,
                   Session.assignment_id, Session.hit_id, Session.external_study_id, Session.external_session_id,
                   Algorithm.name.label("algorithm"), Session.completed_at, Trial.index.label("trial_index"),
                   Trial.kind, Trial.img1_id.label("image1_id"), img1.path.label("image1_file"),
                   Trial.img2_id.label("image2_id"), img2.path.label("image2_file"), Trial.fake_slot, Trial.broken,
                   Trial.answer, Trial.correct, Trial.judged_real, Trial.onset1, Trial.offset1, Trial.onset2,
                   Trial.offset2, Trial.response_ms, Trial.views, Trial.fetches1, Trial.fetches2, Trial.skip_reason,
                   Trial.answered_at, Session.user_agent, Session.screen_w, Session.screen_h, Trial.staircase,
                   Trial.exposure_ms, Trial.frame_ms, Trial.mask_onset, Trial.mask_offset)
            .join(Session, Trial.session_id == Session.id).join(Algorithm, Session.algorithm_id == Algorithm.id)
            .join(img1, Trial.img1_id == img1.id).join(img2, Trial.img2_id == img2.id, isouter=True)
            .where(Session.study_id == study.id).order_by(Session.id, Trial.index))
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    frame.insert(0, "protocol", study.protocol)
    frame.insert(0, "study", study.name)
    frame["practice"] = frame["kind"] == "practice"
    frame["vigilance"] = frame["kind"] == "vigilance"
    frame["shown1_ms"] = frame["offset1"] - frame["onset1"]
    frame["shown2_ms"] = frame["offset2"] - frame["onset2"]
    frame["re_views"] = (frame["fetches1"] - 1).clip(lower=0) + (frame["fetches2"] - 1).clip(lower=0)
    frame["unseen"] = frame["answer"].notna() & ((frame["fetches1"] == 0) |
                                                 (frame["image2_id"].notna() & (frame["fetches2"] == 0)))
    return frame


def study_frame(engine: Engine, study_name: str) -> tuple[Study, list[str], pd.DataFrame, pd.DataFrame]:
    """(study, algorithms, annotated trials, one row per participant): the report's and the CSV's data."""
    frame = trials_frame(engine, study_name)  # a UserError naming the studies when there is no such study
    with session_factory(engine)() as db, db.begin():
        study = db.scalar(select(Study).where(Study.name == study_name))
        algorithms = [a.name for a in study.algorithms]
    mask_ms = HypeTimeParams.from_json(study.protocol_params).mask_ms if study.protocol == "hype-time" else 0
    frame = timing.annotate(frame, study.protocol, study.display_ms, mask_ms)
    people = participants(frame, study.vigilance_max_errors)
    frame = frame.join(people[["completed", "excluded", "exclusion_reason"]], on="session_id")
    return study, algorithms, frame, people


def analyse(engine: Engine, study_name: str, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The study's report as a JSON-able dict (see the module docstring for the statistics)."""
    study, algorithms, frame, people = study_frame(engine, study_name)
    hype = HypeTimeParams.from_json(study.protocol_params) if study.protocol == "hype-time" else None
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"study": study.name, "protocol": study.protocol, "question": study.question,
                           "paired": study.paired, "bootstrap": n_boot, "seed": seed,
                           "exclusion_rule": f"more than {study.vigilance_max_errors} of {study.vigilance} "
                                             "vigilance trials wrong, every test trial off its display time or "
                                             "unseen, or a duplicate participant",
                           "served_images": processing_of(study).describe(), "algorithms": {}, "pairwise": [],
                           "skipped": {"trials": int(frame["skip_reason"].notna().sum()),
                                       "reasons": {str(k): int(v) for k, v in frame["skip_reason"].value_counts().items()}},
                           "re_views": {"trials": int((frame["re_views"] > 0).sum()),
                                        "extra_requests": int(frame["re_views"].sum())},
                           "unseen": {"trials": int(frame["unseen"].sum())},
                           "missed": {"trials": int((frame["answer"] == "missed").sum()), "answer_ms": study.answer_ms},
                           "display_timing": timing.summarise(frame, study.protocol, hype.mask_ms if hype else 0),
                           "participants": json.loads(people.reset_index().to_json(orient="records"))}
    if hype is not None:
        out["hype_time_procedure"] = hype.describe()
    boots: dict[str, np.ndarray] = {}
    for alg in algorithms:
        rows, who = frame[frame["algorithm"] == alg], people[people["algorithm"] == alg]
        included = who.index[~who["excluded"]]
        tested = rows[(rows["kind"] == "main") & rows["session_id"].isin(included) & rows["answer"].notna()]
        missed = tested["timing_ok"].eq(False).fillna(False).astype(bool)
        main = tested[~missed & ~tested["unseen"]]
        entry: dict[str, Any] = {"sessions": int(len(who)), "incomplete": int((~who["completed"]).sum()),
                                 "included": int(len(included)), "excluded": int((who["completed"] & who["excluded"]).sum()),
                                 "skipped_trials": int(rows["skip_reason"].notna().sum()),
                                 "re_viewed_trials": int((rows["re_views"] > 0).sum()),
                                 "timing_excluded_trials": int(missed.sum()),
                                 "unseen_trials": int((tested["unseen"] & ~missed).sum())}
        for reason in REASONS[1:]:  # among completed sessions (an incomplete one is counted as such)
            entry[f"excluded_{reason}"] = int((who["completed"] & who["exclusion_reason"].str.contains(reason)).sum())
        if study.protocol in SINGLE_IMAGE:
            for group, is_fake in (("real", 0), ("fake", 1)):
                entry[f"correct_{group}"], _ = _rates(main[main["fake_slot"] == is_fake], "correct", n_boot, rng)
        fakes = main[main["fake_slot"] == 1] if study.protocol in SINGLE_IMAGE else main
        entry["labeled_real"], boots[alg] = _rates(fakes, "judged_real", n_boot, rng)
        if hype is not None:
            entry["hype_time"] = hype_time_scores(main, hype, n_boot, rng)
        elif study.protocol == "hype-inf":
            entry["hype_inf"] = hype_inf_scores(main, n_boot, rng)
        out["algorithms"][alg] = entry
    for i, a in enumerate(algorithms):
        for b in algorithms[i + 1:]:
            if len(boots[a]) and len(boots[b]):
                diff = np.percentile(boots[a] - boots[b], [2.5, 97.5])
                out["pairwise"].append({"a": a, "b": b, "p_a_gt_b": prob_greater(boots[a], boots[b]),
                                        "diff_ci95": [float(diff[0]), float(diff[1])]})
    return out


def hype_time_scores(main: pd.DataFrame, params: HypeTimeParams, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """HYPE-time of one algorithm from its included test trials (see the module docstring)."""
    thresholds, reversal_means, per_participant = [], [], []
    for session_id, rows in main[main["exposure_ms"].notna()].groupby("session_id"):
        staircases = [StaircaseResult(list(g["exposure_ms"].astype(float)), list(g["correct"].astype(bool)))
                      for _, g in rows.sort_values("trial_index").groupby("staircase")]
        if (value := evaluator_threshold(staircases)) is None:
            continue
        revs = [r for r in (s.reversal_mean(params.reversals_for_mean) for s in staircases) if r is not None]
        thresholds.append(value)
        reversal_means.append(float(np.mean(revs)) if revs else np.nan)
        per_participant.append({"participant": str(rows["participant"].iloc[0]), "threshold_ms": value,
                                "modes_ms": [s.mode for s in staircases], "trials": int(len(rows)),
                                "correct": float(rows["correct"].astype(bool).mean())})
    t = np.asarray(thresholds, dtype=float)
    result: dict[str, Any] = {"threshold_ms": None, "se": None, "ci95": None, "participants": int(len(t)),
                              "target_correct": target_correct(params.down_after),
                              "correct": float(main["correct"].astype(bool).mean()) if len(main) else None,
                              "reversal_mean_ms": float(np.nanmean(reversal_means)) if np.isfinite(reversal_means).any() else None,
                              "per_participant": per_participant}
    if len(t):
        boot = t[rng.integers(0, len(t), size=(n_boot, len(t)))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        result.update(threshold_ms=float(t.mean()), se=float(t.std(ddof=1) / np.sqrt(len(t))) if len(t) > 1 else None,
                      ci95=[float(lo), float(hi)])
    return result


def hype_inf_scores(main: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """HYPE-infinity of one algorithm: error rate overall, on fakes, on reals (see the module docstring)."""
    err = (main["judged_real"].astype(bool) == (main["fake_slot"] == 1)).astype(int)  # fake judged real / real judged fake
    frame = pd.DataFrame({"session_id": main["session_id"], "err": err, "fake": main["fake_slot"] == 1})
    out: dict[str, Any] = {}
    for key, part in (("error", frame), ("error_fake", frame[frame["fake"]]), ("error_real", frame[~frame["fake"]])):
        out[key], _ = _rates(part, "err", n_boot, rng)
    return out


def _pct(stat: dict[str, Any] | None, key: str = "rate", scale: int = 100, unit: str = "%", digits: int = 1) -> str:
    """``VALUE +- SE [LO, HI]`` of a summary (a rate in percent by default), or n/a."""
    if not stat or stat.get(key) is None:
        return "n/a"
    se = f" +- {scale * stat['se']:.{digits}f}" if stat["se"] is not None else ""
    lo, hi = stat["ci95"]
    return f"{scale * stat[key]:.{digits}f}{unit}{se} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def format_report(report: dict[str, Any]) -> str:
    lines = [f"study {report['study']} ({report['protocol']}, question: which is {report['question']}; "
             f"excluded when {report['exclusion_rule']}; 95% CI: two-level bootstrap, {report['bootstrap']} draws)"]
    single = report["protocol"] in SINGLE_IMAGE
    head = "algorithm | included | excluded (vigilance) | incomplete | % labeled real +- SE [95% CI]"
    lines.append(head + (" | % correct real | % correct fake" if single else ""))
    for alg, e in report["algorithms"].items():
        row = f"{alg} | {e['included']} | {e['excluded_vigilance']} | {e['incomplete']} | {_pct(e['labeled_real'])}"
        if single:
            row += f" | {_pct(e['correct_real'])} | {_pct(e['correct_fake'])}"
        lines.append(row)
    lines += [f"P({p['a']} > {p['b']}) = {p['p_a_gt_b']:.3f}" for p in report["pairwise"]] + format_hype(report)
    lines.append(f"served images: same processing {report['served_images']}")
    per_alg = ", ".join(f"{alg} {e['re_viewed_trials']}" for alg, e in report["algorithms"].items())
    views = report["re_views"]
    lines.append(f"re-views (an image requested again while its trial was open; kept in the rates): "
                 f"{count(views['trials'], 'trial')}, {count(views['extra_requests'], 'extra request')}"
                 + (f" ({per_alg})" if views["trials"] else ""))
    lines.append(f"skipped by the server (an image it could not serve): {count(report['skipped']['trials'], 'trial')}"
                 + "".join(f"\n  {n} x {reason}" for reason, n in report["skipped"]["reasons"].items()))
    lines.extend(timing.format_timing(report["display_timing"]))
    lines.append("answered without their images ever fetched (left out of the scores): "
                 f"{count(report['unseen']['trials'], 'trial')}")
    if report["missed"]["answer_ms"]:
        lines.append(f"missed answers (none within {report['missed']['answer_ms']} ms; counted as wrong, and never as "
                     f"labelled real): {count(report['missed']['trials'], 'trial')}")
    return "\n".join(lines + format_excluded(report))


def format_hype(report: dict[str, Any]) -> list[str]:
    """The HYPE lines of the plain-text report (none for other protocols)."""
    lines: list[str] = []
    if report["protocol"] == "hype-time":
        lines.append(f"HYPE-time (Zhou et al. 2019, section 3.1): {report.get('hype_time_procedure', '')}")
        lines.append("  algorithm | participants | HYPE-time threshold +- SE [95% CI, bootstrap over participants] | "
                     "% correct (target) | mean of last reversals")
        for alg, e in report["algorithms"].items():
            h = e["hype_time"]
            correct = f"{100 * h['correct']:.1f}%" if h["correct"] is not None else "n/a"
            rev = f"{h['reversal_mean_ms']:.0f} ms" if h["reversal_mean_ms"] is not None else "n/a"
            lines.append(f"  {alg} | {h['participants']} | {_pct(h, 'threshold_ms', 1, ' ms', 0)} | {correct} "
                         f"({100 * h['target_correct']:.1f}%) | {rev}")
    elif report["protocol"] == "hype-inf":
        lines.append("HYPE-infinity (Zhou et al. 2019, section 3.2): error rate, 50% = indistinguishable from real")
        lines.append("  algorithm | participants | HYPE-inf error +- SE [95% CI] | error on fakes | error on reals")
        for alg, e in report["algorithms"].items():
            h = e["hype_inf"]
            lines.append(f"  {alg} | {h['error']['participants']} | {_pct(h['error'])} | {_pct(h['error_fake'])} | "
                         f"{_pct(h['error_real'])}")
    excluded = {alg: e.get("timing_excluded_trials", 0) for alg, e in report["algorithms"].items()}
    if any(excluded.values()):
        lines.append("test trials left out for display timing: " + ", ".join(f"{a} {n}" for a, n in excluded.items()))
    return lines


def _pm(stat: dict[str, Any] | None) -> tuple[str, str]:
    """("18.9% ± 2.5%", "[14.1, 24.0]") of a rate summary (percent, one decimal, as the paper's tables)."""
    if not stat or stat.get("rate") is None:
        return "n/a", ""
    se = f" ± {100 * stat['se']:.1f}%" if stat["se"] is not None else " (one participant: no SE)"
    lo, hi = stat["ci95"]
    return f"{100 * stat['rate']:.1f}%{se}", f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _paper_labeled_real(report: dict[str, Any], title: str, column: str) -> list[str]:
    """One row per algorithm: the rate of fakes judged real, mean ± SE, bootstrap CI, counts."""
    lines = [title, "", f"| Method | {column} (mean ± SE) | 95% CI | participants | trials |",
             "| --- | --- | --- | --- | --- |"]
    for alg, e in report["algorithms"].items():
        lines.append(f"| {alg} | " + " | ".join(_pm(e["labeled_real"]))
                     + f" | {e['labeled_real']['participants']} | {e['labeled_real']['trials']} |")
    return lines


def _paper_rates(report: dict[str, Any]) -> list[str]:
    """2afc as pix2pix Tables 4-5; sequential as the one-to-many translation paper's Table 1."""
    if report["protocol"] == "sequential":
        return _paper_labeled_real(report, f"Sequential real-vs-fake test, study {report['study']} (real and "
                                   "generated one after the other; as the one-to-many translation paper's Table 1: "
                                   "fooling rate = % of trials where the generated image was judged real, 50% = "
                                   "chance)", "Fooling rate")
    pairing = "real and fake from the same input" if report["paired"] else "real and fake from different inputs"
    return _paper_labeled_real(report, f"AMT-style \"real vs fake\" test, study {report['study']} (side by side, "
                               f"{pairing}; as pix2pix Tables 4-5)", "% labeled real")


def _paper_single(report: dict[str, Any]) -> list[str]:
    lines = [f"Quick-response single-image test, study {report['study']} (one image at a time, real or generated; "
             "as \"Evaluating the Capability of Pix2Pix\", Table I: % correctly identified per group)", "",
             "| Method | Control (real images) % correct (mean ± SE) | 95% CI | Experiment (generated images) % correct "
             "(mean ± SE) | 95% CI | participants |", "| --- | --- | --- | --- | --- | --- |"]
    for alg, e in report["algorithms"].items():
        real, real_ci = _pm(e.get("correct_real"))
        fake, fake_ci = _pm(e.get("correct_fake"))
        lines.append(f"| {alg} | {real} | {real_ci} | {fake} | {fake_ci} | {e['included']} |")
    lines += ["", "(% of generated images labelled real = 100% - the experiment column, per participant.)"]
    return lines


def _paper_hype_time(report: dict[str, Any]) -> list[str]:
    lines = [f"HYPE-time, study {report['study']} (Zhou et al. 2019, section 3.1: the exposure at which fakes are "
             "caught; higher = more realistic): " + report.get("hype_time_procedure", ""), "",
             "| Method | HYPE-time threshold (ms, mean ± SE) | 95% CI | participants | % correct (staircase target) |",
             "| --- | --- | --- | --- | --- |"]
    for alg, e in report["algorithms"].items():
        h = e["hype_time"]
        value = "n/a" if h["threshold_ms"] is None else f"{h['threshold_ms']:.0f}" + (
            f" ± {h['se']:.0f}" if h["se"] is not None else " (one participant: no SE)")
        ci = f"[{h['ci95'][0]:.0f}, {h['ci95'][1]:.0f}]" if h["ci95"] else ""
        correct = f"{100 * h['correct']:.1f}%" if h["correct"] is not None else "n/a"
        lines.append(f"| {alg} | {value} | {ci} | {h['participants']} | {correct} ({100 * h['target_correct']:.1f}%) |")
    lines += ["", "(Threshold CI: bootstrap over participants.)"]
    return lines


def _paper_hype_inf(report: dict[str, Any]) -> list[str]:
    lines = [f"HYPE-infinity, study {report['study']} (Zhou et al. 2019, section 3.2 and Table 2: error rate of "
             "unlimited-time real/fake judgements; 50% = indistinguishable from real)", "",
             "| Method | HYPE-inf error (mean ± SE) | 95% CI | Fakes error | 95% CI | Reals error | 95% CI | participants |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for alg, e in report["algorithms"].items():
        h = e["hype_inf"]
        cells = [part for key in ("error", "error_fake", "error_real") for part in _pm(h[key])]
        lines.append(f"| {alg} | " + " | ".join(cells) + f" | {h['error']['participants']} |")
    return lines


#: protocol -> its paper-style table (``study report --format paper``)
PAPER_FORMATS: dict[str, Any] = {"2afc": _paper_rates, "sequential": _paper_rates, "single": _paper_single,
                                 "hype-time": _paper_hype_time, "hype-inf": _paper_hype_inf}


def format_paper(report: dict[str, Any]) -> str:
    """The report as each protocol's source prints it (Markdown, see :data:`PAPER_FORMATS`), with 95% CIs,
    the pairwise differences and what was left out."""
    lines = PAPER_FORMATS[report["protocol"]](report) + [
        "", "Mean over participants of each one's rate ± standard error (sample sd / sqrt(participants)); 95% CI: "
        f"two-level bootstrap (participants, then their trials; {report['bootstrap']} draws, seed {report['seed']}). "
        "Practice and vigilance trials are left out."]
    for p in report["pairwise"]:
        a, b = report["algorithms"][p["a"]]["labeled_real"], report["algorithms"][p["b"]]["labeled_real"]
        lo, hi = p.get("diff_ci95", (None, None))
        ci = f", 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo is not None else ""
        verdict = "" if lo is None else ("; the CI excludes 0" if lo > 0 or hi < 0 else "; the CI includes 0")
        lines.append(f"- {p['a']} - {p['b']} (% labeled real): {100 * (a['rate'] - b['rate']):+.1f} points{ci}"
                     f"{verdict}; P({p['a']} > {p['b']}) = {p['p_a_gt_b']:.3f}")
    counts = [f"{alg}: {e['included']} included, {e['excluded']} excluded ({e['excluded_vigilance']} by the vigilance "
              f"rule), {e['incomplete']} incomplete" for alg, e in report["algorithms"].items()]
    lines.append(f"- participants ({report['exclusion_rule']} excludes): " + "; ".join(counts))
    lines.append(f"- served images: {report['served_images']}; skipped trials: {report['skipped']['trials']}; "
                 f"re-viewed trials: {report['re_views']['trials']}")
    return "\n".join(lines)


def report(engine: Engine, study_name: str, json_out: str | Path | None = None, csv_out: str | Path | None = None,
           n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Analyse ``study_name``; write the JSON report and the per-trial CSV when asked."""
    from p2p_eval.fsutil import atomic_write_text  # imports torch: only when a report is written
    result = analyse(engine, study_name, n_boot=n_boot, seed=seed)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
    if csv_out is not None:
        atomic_write_text(csv_out, study_frame(engine, study_name)[2].to_csv(index=False))
    return result
