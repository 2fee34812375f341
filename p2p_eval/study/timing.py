"""Display timing of a study: how long the page really showed each image, against what was asked.

The page posts the ``requestAnimationFrame`` timestamps of the frames that showed and hid each image
(``onset``/``offset``) and, before each trial, the median rAF delta over 500 ms (``frame_ms``).  Requested:
``hype-time`` the trial's exposure; ``2afc``, ``single`` ``display_ms``; ``sequential`` ``display_ms`` per image
(the larger miss counts); ``hype-inf`` none (viewing time reported).  A trial that missed by more than one frame
(the trial's interval, else its session's median, else 1000/60 ms) plus 1 ms (coarsened browser clocks) is left
out of the scores and counted; trials without timing are "unmeasured" (kept); masks are reported only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ASSUMED_FRAME_MS = 1000 / 60
CLOCK_MS = 1.0  # allowance for performance.now() resolution


def annotate(frame: pd.DataFrame, protocol: str, display_ms: int, mask_ms: int = 0) -> pd.DataFrame:
    """``frame`` (one row per trial) with ``requested_ms``, ``measured_ms``, ``miss_ms``, ``frame_used_ms``,
    ``frame_source`` and ``timing_ok`` (True / False / NA when not judged: unmeasured, or hype-inf)."""
    out = frame.copy()
    shown1 = out["offset1"] - out["onset1"]
    if protocol == "hype-time":
        requested = out["exposure_ms"].astype(float)
    elif protocol == "hype-inf":
        requested = pd.Series(np.nan, index=out.index)
    else:
        requested = pd.Series(float(display_ms), index=out.index)
    miss = (shown1 - requested).abs()
    if protocol == "sequential":
        miss = pd.concat([miss, ((out["offset2"] - out["onset2"]) - requested).abs()], axis=1).max(axis=1, skipna=False)
    own = out["frame_ms"].astype(float) if "frame_ms" in out else pd.Series(np.nan, index=out.index)
    session = own.groupby(out["session_id"]).transform("median")
    frame_used = own.fillna(session).fillna(ASSUMED_FRAME_MS)
    out["frame_source"] = np.where(own.notna(), "trial", np.where(session.notna(), "session", "assumed"))
    out["requested_ms"], out["measured_ms"], out["miss_ms"], out["frame_used_ms"] = requested, shown1, miss, frame_used
    judged = miss.notna()
    out["timing_ok"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    out.loc[judged, "timing_ok"] = miss[judged] <= frame_used[judged] + CLOCK_MS
    if protocol == "hype-time":
        out["mask_shown_ms"] = out["mask_offset"] - out["mask_onset"]
    return out


def _dist(values: pd.Series) -> dict[str, Any]:
    if (values := values.dropna().astype(float)).empty:
        return {"trials": 0}
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"trials": int(len(values)), "mean": float(values.mean()), "median": float(p50), "p5": float(p5),
            "p95": float(p95), "min": float(values.min()), "max": float(values.max())}


def summarise(annotated: pd.DataFrame, protocol: str, mask_ms: int = 0) -> dict[str, Any]:
    """The study's display-timing section: frame intervals, measured vs requested durations per requested
    duration, and the trials excluded by the one-frame rule (all answered trials; ``main`` = test trials)."""
    answered = annotated[annotated["answer"].notna()]
    sources = answered.loc[answered["measured_ms"].notna(), "frame_source"].value_counts()
    out: dict[str, Any] = {
        "rule": (f"excluded when |measured - requested| > one frame + {CLOCK_MS:g} ms (clock resolution); one frame "
                 f"= the trial's measured frame interval (median rAF delta before the trial), else its session's, "
                 f"else {ASSUMED_FRAME_MS:.2f} ms (60 Hz, assumed)"),
        "frame_ms": _dist(answered["frame_ms"]) if "frame_ms" in answered else {"trials": 0},
        "frame_source": {str(k): int(v) for k, v in sources.items()},
        "answered": int(len(answered)), "unmeasured": int(answered["measured_ms"].isna().sum()),
        "judged": int(answered["timing_ok"].notna().sum()),
        "excluded": int((answered["timing_ok"] == False).sum()),  # noqa: E712 - nullable boolean
        "excluded_main": int(((answered["timing_ok"] == False) & (answered["kind"] == "main")).sum()),  # noqa: E712
        "by_requested": []}
    if protocol == "hype-inf":
        out["viewing_ms"] = _dist(answered["measured_ms"])
        return out
    for requested, rows in answered[answered["timing_ok"].notna()].groupby("requested_ms"):
        entry = {"requested_ms": float(requested), **_dist(rows["measured_ms"])}
        entry["excluded"] = int((rows["timing_ok"] == False).sum())  # noqa: E712
        entry["median_miss_frames"] = float((rows["miss_ms"] / rows["frame_used_ms"]).median())
        out["by_requested"].append(entry)
    if protocol == "hype-time" and mask_ms:
        out["mask"] = {"requested_ms": mask_ms, **_dist(answered["mask_shown_ms"])}
    return out


def format_timing(section: dict[str, Any]) -> list[str]:
    frame = section["frame_ms"]
    frame_txt = (f"frame interval median {frame['median']:.2f} ms [p5 {frame['p5']:.2f}, p95 {frame['p95']:.2f}] over "
                 f"{frame['trials']} trials" if frame.get("trials") else f"frame interval not measured, assumed "
                 f"{ASSUMED_FRAME_MS:.2f} ms")
    lines = [f"display timing: {frame_txt}; {section['judged']} of {section['answered']} answered trials judged, "
             f"{section['unmeasured']} unmeasured; excluded {section['excluded']} ({section['excluded_main']} test "
             "trials) that missed the requested duration by more than one frame",
             f"  rule: {section['rule']}"]
    if "viewing_ms" in section and section["viewing_ms"].get("trials"):
        v = section["viewing_ms"]
        lines.append(f"  viewing time (unlimited display): median {v['median']:.0f} ms [p5 {v['p5']:.0f}, p95 {v['p95']:.0f}]")
    if section["by_requested"]:
        lines.append("  requested ms | trials | measured median [p5, p95] (min-max) ms | median miss (frames) | excluded")
        for e in section["by_requested"]:
            lines.append(f"  {e['requested_ms']:.0f} | {e['trials']} | {e['median']:.1f} [{e['p5']:.1f}, {e['p95']:.1f}] "
                         f"({e['min']:.1f}-{e['max']:.1f}) | {e['median_miss_frames']:.2f} | {e['excluded']}")
    if (mask := section.get("mask")) and mask.get("trials"):
        lines.append(f"  noise mask: requested {mask['requested_ms']} ms, measured median {mask['median']:.1f} ms "
                     f"[p5 {mask['p5']:.1f}, p95 {mask['p95']:.1f}] over {mask['trials']} trials (reported, not judged)")
    return lines
