"""A real browser (Debian's chromium through Playwright) completes whole sessions by clicking; the stored
trials are checked, including that every image was shown display-ms +- one frame as the page logged it.

Screenshots of the participant pages go to ``tmp_path`` (or to ``$P2P_STUDY_SCREENSHOTS`` when set, which
is how reports/study/*.png were made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.study.models import Session, Study, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine
from p2p_eval.study.timing import annotate

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
FRAME_MS = 1000 / 60
SLACK_MS = 6  # headless chromium's frame clock jitters a little
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium on PATH: apt-get install chromium")]


def _scene(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A toy street scene: sky, buildings, road, a car."""
    img = Image.new("RGB", (size, size), (135, 180, 230))
    draw = ImageDraw.Draw(img)
    x = 0
    while x < size:
        w, h = int(rng.integers(15, 35)), int(rng.integers(40, 90))
        draw.rectangle([x, size * 0.65 - h, x + w, size * 0.65], fill=tuple(int(c) for c in rng.integers(60, 200, 3)))
        for wy in range(int(size * 0.65 - h) + 5, int(size * 0.65) - 5, 9):
            draw.rectangle([x + 4, wy, x + w - 4, wy + 3], fill=(230, 230, 190))
        x += w + int(rng.integers(0, 6))
    draw.rectangle([0, size * 0.65, size, size], fill=(90, 90, 95))
    cx = int(rng.integers(10, size - 50))
    draw.rectangle([cx, size * 0.72, cx + 40, size * 0.85], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """real/: toy scenes; blurry/: the same scenes blurred (a stand-in for an L1-only generator)."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(7)
    (root / "real").mkdir()
    (root / "blurry").mkdir()
    for i in range(1, 9):
        img = _scene(rng)
        img.save(root / "real" / f"{i}.png")
        img.filter(ImageFilter.GaussianBlur(2.5)).save(root / "blurry" / f"{i}.png")
    return {"real": root / "real", "blurry": root / "blurry"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, scenes: dict[str, Path], server_factory):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('browser_db') / 'study.db'}"
    engine = make_engine(db_url)
    common = {"real": str(scenes["real"]), "fake": {"blurry": str(scenes["blurry"])}, "paired": True}
    create_study(engine, StudySpec(name="twoafc", protocol="2afc", trials=2, practice=2, vigilance=1, display_ms=300, **common))
    create_study(engine, StudySpec(name="seq", protocol="sequential", trials=2, practice=0, display_ms=300, **common))
    create_study(engine, StudySpec(name="look", protocol="2afc", trials=1, practice=0, display_ms=3000, **common))
    create_study(engine, StudySpec(name="again", protocol="2afc", trials=2, practice=0, display_ms=200, **common))
    yield server_factory(db_url), engine
    engine.dispose()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("P2P_STUDY_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _stored(engine, study: str) -> tuple[Session, list[Trial]]:
    with OrmSession(engine) as db:
        sid = db.scalar(select(Study.id).where(Study.name == study))
        session = db.scalar(select(Session).where(Session.study_id == sid))
        trials = list(db.scalars(select(Trial).where(Trial.session_id == session.id).order_by(Trial.index)))
    return session, trials


def _complete(page, total: int, practice: int, shots: Path | None = None) -> None:
    for i in range(total):
        page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
        if shots is not None and i == 0:
            page.screenshot(path=str(shots / "3_question.png"))
        page.click('#answers button[data-answer="1"]')
        if i < practice:
            page.wait_for_selector("#continue", state="visible")
            if shots is not None and i == 0:
                page.screenshot(path=str(shots / "4_feedback.png"))
            page.click("#continue")
    page.wait_for_selector("#done", state="visible", timeout=15_000)


def _check_timing(trials: list[Trial], display_ms: int, slots: int) -> None:
    """Every image shown for display_ms within a frame (+ the clock's jitter), except at most one trial: a busy
    machine (CI beside other jobs) can delay headless chromium's frames.  Whatever missed by more than the trial's
    own frame + 1 ms must be what the report's one-frame rule excludes (p2p_eval.study.timing), never a silent pass."""
    far, beyond_rule = [], []
    for t in trials:
        shown = [t.offset1 - t.onset1] + ([t.offset2 - t.onset2] if slots == 2 else [])
        print(f"trial {t.index}: shown {', '.join(f'{ms:.1f}' for ms in shown)} ms (display_ms {display_ms})")
        if any(abs(ms - display_ms) > FRAME_MS + SLACK_MS for ms in shown):
            far.append(t.index)
        if any(abs(ms - display_ms) > t.frame_ms + 1.0 for ms in shown):
            beyond_rule.append(t.index)
        assert t.response_ms > 0
    assert len(far) <= 1, f"trials {far} missed {display_ms} ms by more than a frame"
    rows = pd.DataFrame([{k: getattr(t, k) for k in ("onset1", "offset1", "onset2", "offset2", "frame_ms",
                                                      "session_id")} for t in trials])
    ok = annotate(rows, "sequential" if slots == 2 else "2afc", display_ms)["timing_ok"].tolist()
    assert [t.index for t, good in zip(trials, ok) if not good] == beyond_rule


def test_whole_session_by_clicking(browser, server, shots) -> None:
    live, engine = server
    page = browser.new_page(viewport={"width": 900, "height": 720})
    worker = "W<b>1</b>"
    page.goto(f"{live.url}/s/twoafc?" + urlencode({"workerId": worker, "assignmentId": "A1", "hitId": "H1"}))
    page.wait_for_selector("#start", state="visible")
    page.screenshot(path=str(shots / "1_instructions.png"))
    page.click("#start")
    _complete(page, total=5, practice=2, shots=shots)
    page.screenshot(path=str(shots / "5_completion.png"))
    session, trials = _stored(engine, "twoafc")
    assert page.text_content("#code") == session.completion_code
    assert page.text_content("#participant") == f"Participant: {worker}", "user strings shown as text"
    assert page.locator("#participant b").count() == 0
    assert session.participant == f"mturk:{worker}" and session.completed_at is not None
    assert "Chrome" in session.user_agent and session.screen_w > 0 and session.screen_h > 0
    assert [t.answer for t in trials] == ["1"] * 5 and all(t.views == 1 for t in trials)
    assert all(t.fetches1 == 1 and t.fetches2 == 1 for t in trials), "each image requested once: no re-view"
    assert "Mechanical Turk" in page.text_content("#code-use"), "the page says what to do with the code"
    _check_timing(trials, 300, slots=1)
    assert all(t.onset1 == t.onset2 and t.offset1 == t.offset2 for t in trials), "2afc: both images together"
    page.reload()  # a reload after the end goes straight to the completion page
    page.wait_for_selector("#done", state="visible")
    assert page.text_content("#code") == session.completion_code
    page.close()


def test_sequential_images_each_shown_display_ms(browser, server) -> None:
    live, engine = server
    page = browser.new_page()
    page.goto(f"{live.url}/s/seq")
    page.click("#start")
    _complete(page, total=2, practice=0)
    session, trials = _stored(engine, "seq")
    assert session.source == "anon"
    _check_timing(trials, 300, slots=2)
    assert all(t.onset2 == t.offset1 for t in trials), "the second image replaces the first on the same frame"
    page.close()


def test_resume_note_copy_button_and_refusal_first(browser, server) -> None:
    """A reload mid-session says it resumes (at trial 2 of 2); the completion page copies the code; a second
    Prolific session of the same participant is refused before any instructions."""
    live, engine = server
    ids = {"PROLIFIC_PID": "P9", "STUDY_ID": "S", "SESSION_ID": "first"}
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    page.goto(f"{live.url}/s/again?" + urlencode(ids))
    assert not page.is_visible("#resume-note")
    page.click("#start")
    page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
    page.click('#answers button[data-answer="1"]')
    page.wait_for_selector("#progress:has-text('Trial 2 of 2')", timeout=15_000)
    page.reload()
    page.wait_for_selector("#resume-note", state="visible")
    assert "resuming where you stopped" in page.text_content("#resume-note")
    assert "trial 2 of 2" in page.text_content("#resume-note") and page.text_content("#start") == "Continue"
    page.click("#start")
    _complete(page, total=1, practice=0)
    assert "Prolific" in page.text_content("#code-use")
    page.click("#copy")
    page.wait_for_selector("#copy-status:has-text('Copied.')")
    assert page.evaluate("navigator.clipboard.readText()") == page.text_content("#code")
    other = context.new_page()
    other.goto(f"{live.url}/s/again?" + urlencode({**ids, "SESSION_ID": "second"}))
    other.wait_for_selector("#error", state="visible")
    assert "already taken part" in other.text_content("#error-text")
    assert not other.is_visible("#instructions") and not other.is_visible("#start")
    context.close()


def test_preview_shows_instructions_only(browser, server) -> None:
    live, engine = server
    page = browser.new_page()
    page.goto(f"{live.url}/s/look?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H")
    page.wait_for_selector("#preview-note", state="visible")
    assert not page.is_visible("#start")
    with OrmSession(engine) as db:
        sid = db.scalar(select(Study.id).where(Study.name == "look"))
        assert db.scalar(select(Session.id).where(Session.study_id == sid)) is None
    page.close()


def test_trial_screenshot(browser, server, shots, scenes) -> None:
    """The trial screenshot shows a real scene and its blurred twin side by side, each at 256 x 256 and
    matching the served file's pixels; once they are hidden, the stage is blank and two answer buttons exist."""
    import io

    live, _ = server
    page = browser.new_page(viewport={"width": 900, "height": 720}, device_scale_factor=1)
    page.goto(f"{live.url}/s/look?PROLIFIC_PID=shot&STUDY_ID=S&SESSION_ID=X")
    page.click("#start")
    page.wait_for_selector("#stage img[style*='visible']", state="attached", timeout=15_000)
    page.screenshot(path=str(shots / "2_trial.png"))
    where = "imgs => imgs.map(i => { const r = i.getBoundingClientRect(); " \
            "return [r.x, r.y, r.width, r.height, getComputedStyle(i).visibility]; })"
    boxes = page.eval_on_selector_all("#stage img", where)
    assert page.locator("#answers button").count() == 0, "no answer buttons while the images are shown"
    page.wait_for_selector("#answers button", state="visible", timeout=15_000)
    buttons = page.locator("#answers button").all_text_contents()
    after = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.float64)
    hidden = [v for *_, v in page.eval_on_selector_all("#stage img", where)]
    page.close()

    assert len(boxes) == 2 and [b[4] for b in boxes] == ["visible", "visible"], boxes
    assert all(round(w) == 256 and round(h) == 256 for _, _, w, h, _ in boxes), boxes
    (lx, ly, lw, _, _), (rx, ry, _, _, _) = boxes
    assert lx + lw <= rx and abs(ly - ry) < 1, "side by side, left then right"
    shot = np.asarray(Image.open(shots / "2_trial.png").convert("RGB")).astype(np.float64)
    crops = [shot[round(y):round(y) + 256, round(x):round(x) + 256] for x, y, *_ in boxes]
    # references: the study's source files at the displayed size (the browser's upscaling differs from
    # PIL's bilinear by ~1-3 levels; a scene differs from its blurred twin by ~13, from other scenes by more)
    refs = {(kind, i): np.asarray(Image.open(scenes[kind] / f"{i}.png").convert("RGB").resize((256, 256), Image.BILINEAR),
                                  dtype=np.float64) for kind in ("real", "blurry") for i in range(1, 9)}
    shown = []
    for crop in crops:
        assert crop.shape == (256, 256, 3) and crop.std() > 25, "an image, not a blank box"
        error, key = min((float(np.abs(crop - ref).mean()), key) for key, ref in refs.items())
        assert error < 6, f"the shown image matches no study image (best {key}: mean abs error {error:.1f})"
        shown.append(key)
    assert sorted(kind for kind, _ in shown) == ["blurry", "real"] and shown[0][1] == shown[1][1], \
        f"one real image and the blurred version of the same frame (paired study), got {shown}"
    sharp = [float(np.abs(np.diff(c.mean(axis=2), axis=1)).mean()) for c in crops]
    assert sharp[[k for k, _ in shown].index("real")] > 1.5 * sharp[[k for k, _ in shown].index("blurry")]
    # after display_ms: images hidden (the stage shows only the page background), two answers offered
    assert hidden == ["hidden", "hidden"] and buttons == ["Left was fake", "Right was fake"]
    for x, y, *_ in boxes:
        region = after[round(y):round(y) + 256, round(x):round(x) + 256]
        assert region.std() < 1, "the stage is empty once the images are hidden"
