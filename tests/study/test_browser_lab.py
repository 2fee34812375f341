"""The lab's pages in a real browser (Debian's chromium through Playwright): the consent page before the
instructions (declining creates nothing; agreeing leads to the lab's instructions and a session), and the page
a new arrival sees once the study is full or closed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.study.lab import close_study
from p2p_eval.study.models import Session, Study
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium on PATH: apt-get install chromium")]
CONSENT = "This study is run by the Image Lab.\nYou will be paid 2 GBP. You may stop at any time."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, image_dirs, server_factory):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('lab_db') / 'study.db'}"
    engine = make_engine(db_url)
    common = {"real": str(image_dirs["real"]), "fake": {"g": str(image_dirs["alg_a"])}, "trials": 1, "practice": 0,
              "display_ms": 100}
    create_study(engine, StudySpec(name="paid", consent=CONSENT, instructions="Look at the edges.",
                                   max_participants=1, **common))
    create_study(engine, StudySpec(name="over", **common))
    close_study(engine, "over")
    yield server_factory(db_url), engine
    engine.dispose()


def _sessions(engine, study: str) -> int:
    with OrmSession(engine) as db:
        return db.scalar(select(func.count(Session.id)).join(Study, Study.id == Session.study_id)
                         .where(Study.name == study))


def test_consent_then_study_full(browser, server) -> None:
    live, engine = server
    page = browser.new_context().new_page()
    page.goto(f"{live.url}/s/paid")
    page.wait_for_selector("#consent", state="visible")
    assert page.text_content("#consent-text") == CONSENT and not page.is_visible("#instructions")
    page.click("#decline")
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error-title") == "You have not joined the study"
    assert _sessions(engine, "paid") == 0, "declining creates nothing"

    page = browser.new_context().new_page()
    page.goto(f"{live.url}/s/paid?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x")
    page.click("#agree")
    page.wait_for_selector("#instructions", state="visible")
    assert page.text_content("#lab-text") == "Look at the edges." and page.is_visible("#intro")
    page.click("#start")
    page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
    page.click('#answers button[data-answer="1"]')
    page.wait_for_selector("#done", state="visible", timeout=15_000)
    assert _sessions(engine, "paid") == 1
    page.reload()  # the participant who took part comes back to their code, not to the full page
    page.wait_for_selector("#done", state="visible")

    page = browser.new_context().new_page()  # the cap (1 per algorithm) is reached: a newcomer is told
    page.goto(f"{live.url}/s/paid?PROLIFIC_PID=p2&STUDY_ID=s&SESSION_ID=y")
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error-title") == "This study is full"
    assert "all the participants it needs" in page.text_content("#error-text")
    assert not page.is_visible("#consent") and not page.is_visible("#instructions")
    assert _sessions(engine, "paid") == 1


def test_closed_study_page(browser, server) -> None:
    live, engine = server
    page = browser.new_context().new_page()
    page.goto(f"{live.url}/s/over")
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error-title") == "This study is closed"
    assert _sessions(engine, "over") == 0
