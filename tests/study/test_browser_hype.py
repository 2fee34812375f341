"""A real browser (Debian's chromium through Playwright) runs HYPE sessions by clicking.

hype-time: the test clicks a known pattern of right and wrong answers (it reads the truth of each trial from the
database) and checks that the exposures the server asked for follow the 3-down/1-up rule given those answers
(the rule written out here), that a reload mid-session resumes the staircase where it stood, and that the page
showed each image for the requested exposure within one frame (+ a small slack for headless chromium's frame
clock) and the noise mask right after it, on the same frame, for its requested time.
hype-inf: the image stays on screen while the answer buttons are offered, and is hidden once answered.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from tests.study.loadgen import write_noise_folders
from p2p_eval.study.models import Session, Study, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
SLACK_MS = 6  # headless chromium's frame clock jitters a little
LADDER = [100, 200, 300, 400, 500]
MASK_MS = 150
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium on PATH: apt-get install chromium")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_factory):
    root = tmp_path_factory.mktemp("hype_browser")
    dirs = write_noise_folders(root, count=12, side=64)
    db_url = f"sqlite:///{root / 'study.db'}"
    engine = make_engine(db_url)
    common = {"real": str(dirs["real"]), "fake": {"g": str(dirs["alg_a"])}, "practice": 0}
    create_study(engine, StudySpec(name="ht", protocol="hype-time", trials=9, staircases=1, exposures_ms=LADDER,
                                   start_ms=300, mask_ms=MASK_MS, **common))
    create_study(engine, StudySpec(name="hi", protocol="hype-inf", trials=2, **common))
    yield server_factory(db_url), engine
    engine.dispose()


def _trials(engine, study: str) -> list[Trial]:
    with OrmSession(engine) as db:
        sid = db.scalar(select(Study.id).where(Study.name == study))
        session = db.scalar(select(Session).where(Session.study_id == sid))
        return list(db.scalars(select(Trial).where(Trial.session_id == session.id).order_by(Trial.index)))


def _click(page, engine, study: str, index: int, right: bool) -> None:
    page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
    truth = "fake" if _trials(engine, study)[index].fake_slot else "real"
    value = truth if right else ("real" if truth == "fake" else "fake")
    page.click(f'#answers button[data-answer="{value}"]')


def rule(answers: list[bool], start: int) -> list[int]:
    """Exposures the 3-down/1-up rule asks for, given the answers before each trial."""
    level, run, out = LADDER.index(start), 0, []
    for ok in answers:
        out.append(LADDER[level])
        if ok:
            run += 1
            if run == 3:
                level, run = max(0, level - 1), 0
        else:
            level, run = min(len(LADDER) - 1, level + 1), 0
    return out


def test_hype_time_session_follows_the_staircase(browser, server) -> None:
    live, engine = server
    answers = [True, True, True, True, True, True, False, True, False]  # 300 x3, 200 x3, 100, 200, 200
    page = browser.new_page(viewport={"width": 900, "height": 720})
    page.goto(f"{live.url}/s/ht?PROLIFIC_PID=B1&STUDY_ID=S&SESSION_ID=X")
    page.wait_for_selector("#start", state="visible")
    assert "flashes up very briefly" in page.text_content("#how") and "noise" in page.text_content("#how")
    page.click("#start")
    for i, right in enumerate(answers):
        if i == 4:  # reload mid-session: the page resumes, the server continues the staircase where it stood
            page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
            page.reload()
            page.wait_for_selector("#resume-note", state="visible")
            page.click("#start")
        _click(page, engine, "ht", i, right)
    page.wait_for_selector("#done", state="visible", timeout=15_000)
    page.close()

    trials = _trials(engine, "ht")
    requested = [t.exposure_ms for t in trials]
    print("requested", requested, "answers", [t.correct for t in trials])
    assert [t.correct for t in trials] == answers, "the clicks landed as intended"
    assert requested == rule(answers, 300) == [300, 300, 300, 200, 200, 200, 100, 200, 200]
    # At most one image and one mask off by more than a frame (+ clock jitter): a busy machine can delay headless
    # chromium's frames; an image that missed by more than its frame + 1 ms must be excluded by the report.
    far_shown, far_mask, beyond_rule = [], [], []
    for t in trials:
        frame = t.frame_ms
        shown, mask = t.offset1 - t.onset1, t.mask_offset - t.mask_onset
        print(f"trial {t.index}: requested {t.exposure_ms} ms, shown {shown:.1f} ms, mask {mask:.1f} ms, "
              f"frame {frame:.2f} ms, views {t.views}")
        assert 5 < frame < 50, "the page measured a plausible frame interval"
        far_shown += [t.index] if abs(shown - t.exposure_ms) > frame + SLACK_MS else []
        beyond_rule += [t.index] if abs(shown - t.exposure_ms) > frame + 1.0 else []
        assert t.mask_onset == t.offset1, "the mask replaces the image on the same frame"
        far_mask += [t.index] if abs(mask - MASK_MS) > frame + SLACK_MS else []
        assert t.response_ms > 0
    assert len(far_shown) <= 1 and len(far_mask) <= 1, f"images {far_shown}, masks {far_mask} missed by > a frame"
    assert trials[4].views == 2, "the reloaded trial was opened twice, at the same exposure"

    from p2p_eval.study.analysis import analyse

    report = analyse(engine, "ht", n_boot=100)
    assert report["display_timing"]["excluded"] == len(beyond_rule)
    assert report["display_timing"]["frame_source"] == {"trial": 9}
    if not beyond_rule:  # an excluded trial leaves the threshold's count
        assert report["algorithms"]["g"]["hype_time"]["threshold_ms"] == 200.0, "modal exposure of 300x3, 200x5, 100"


def test_hype_inf_image_stays_until_the_answer(browser, server) -> None:
    live, engine = server
    page = browser.new_page()
    page.goto(f"{live.url}/s/hi")
    page.wait_for_selector("#start", state="visible")
    assert "stays until you answer" in page.text_content("#how")
    assert "stays on screen until you answer" in page.text_content("#brief-note")
    page.click("#start")
    for i in range(2):
        page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
        page.wait_for_timeout(700)
        assert page.eval_on_selector("#stage img", "i => getComputedStyle(i).visibility") == "visible"
        _click(page, engine, "hi", i, True)
    page.wait_for_selector("#done", state="visible", timeout=15_000)
    page.close()
    for t in _trials(engine, "hi"):
        assert t.exposure_ms is None and t.offset1 - t.onset1 >= 700, "viewing time: onset to the answer"
        assert t.response_ms >= 700
