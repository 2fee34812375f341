"""``p2p-eval study quick`` end to end: the command in a subprocess, one assessor in chromium answering three
images and missing the fourth, the results page checked against the answers given, and Ctrl-C leaving nothing
behind (the command's temporary folder lives under a TMPDIR of the test's own)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.study.loadgen import free_port, write_noise_folders

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium on PATH: apt-get install chromium")]
ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, dirs: dict[str, Path]) -> tuple[subprocess.Popen, str, Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p2p_eval.cli", "study", "quick", "--real", str(dirs["real"]),
                             "--images", str(dirs["gen"]), "--labels", str(dirs["labels"]), "--count", "2",
                             "--answer-ms", "1500", "--display-ms", "100", "--seed", "1", "--port", str(port),
                             "--no-browser"], cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()
    assert list(scratch.glob("p2p-quick-*")), "the session's folder exists while it runs"
    assert f"open http://127.0.0.1:{port}/s/quick" in first, first
    return proc, f"http://127.0.0.1:{port}", scratch


def _stop(proc: subprocess.Popen, scratch: Path) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert list(scratch.glob("p2p-quick-*")) == [], "the temporary folder is gone"
    return out


def test_quick_session_results_and_ctrl_c(browser, tmp_path) -> None:
    dirs = write_noise_folders(tmp_path, names=("real", "gen", "labels"), count=3, side=32)
    proc, base, scratch = _start(tmp_path, dirs)
    try:
        page = browser.new_context().new_page()
        page.goto(f"{base}/s/quick")
        page.wait_for_selector("#start", state="visible")
        assert "1.5 seconds to answer" in page.text_content("#time-note")
        page.click("#start")
        given = ["real", "fake", None, "real"]  # None: no click, the answer window runs out
        for i, value in enumerate(given):
            page.wait_for_selector(f"#progress:has-text('Trial {i + 1} of 4')", timeout=15_000)
            page.wait_for_selector("#answers button:not([disabled])", state="visible", timeout=15_000)
            if value is not None:
                page.click(f'#answers button[data-answer="{value}"]')
        page.wait_for_selector("#done", state="visible", timeout=15_000)
        page.wait_for_url(f"{base}/quick/results", timeout=15_000)  # the completion page goes on to the results
        rows = page.eval_on_selector_all("#results tr", "rows => rows.slice(1).map(r => "
                                         "[...r.cells].map(c => c.textContent))")
        loaded = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        summary = page.text_content("#summary")
    finally:
        out = _stop(proc, scratch)
    assert [r[5] for r in rows] == ["real", "fake", "missed", "real"], "the answers as given, the miss recorded"
    assert sorted(r[4] for r in rows) == ["generated", "generated", "real", "real"], "2 real + 2 generated"
    for _, _, _, _, shown, answer, correct in rows:
        right = (answer == "real") == (shown == "real") and answer != "missed"
        assert correct == ("yes" if right else "no"), (shown, answer, correct)
    real_right = sum(r[4] == "real" and r[6] == "yes" for r in rows)
    generated_right = sum(r[4] == "generated" and r[6] == "yes" for r in rows)
    expected = (f"correct identifications: real {real_right} of 2, generated {generated_right} of 2 "
                "(1 missed answers, counted as wrong)")
    assert summary == expected and expected in out
    assert len(loaded) == 12 and all(w == 32 for w in loaded), "label map, ground truth and prediction per image"


def test_ctrl_c_before_the_end_leaves_nothing(tmp_path) -> None:
    dirs = write_noise_folders(tmp_path, names=("real", "gen", "labels"), count=3, side=32)
    proc, _, scratch = _start(tmp_path, dirs)
    assert re.search("quick test ended", _stop(proc, scratch))
