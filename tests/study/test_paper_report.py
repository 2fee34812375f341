"""``study report --format paper`` on hand-made databases: the numbers in the paper-style tables against values
computed by hand (mean of per-participant rates, SE = sample sd / sqrt(n), in percent with one decimal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.cli import main
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.server import create_app
from p2p_eval.study.store import make_engine
from tests.study.loadgen import open_trial


def _make(db: str, image_dirs: dict[str, Path], **values) -> None:  # noqa: ANN003
    spec = {"name": "s", "real": str(image_dirs["real"]), "trials": 4, "practice": 1, "seed": 2,
            "fake": {"alg_a": str(image_dirs["alg_a"]), "alg_b": str(image_dirs["alg_b"])}}
    spec.update(values)
    engine = make_engine(db)
    try:
        create_study(engine, StudySpec(**spec))
    finally:
        engine.dispose()


def _run(db: str, plan: dict[str, object]) -> None:
    """Each participant (in arrival order) answers every trial: ``plan[pid](trial, seen)`` says what, from the
    trial's truth and the counts of trials answered so far by (kind, fake_slot)."""
    app = create_app(db)
    try:
        with TestClient(app) as client:
            for pid, decide in plan.items():
                token = client.post("/api/studies/s/sessions", json={"PROLIFIC_PID": pid, "SESSION_ID": "x"}).json()["session"]
                with OrmSession(app.state.engine) as db_session:
                    sid = db_session.scalar(select(Session.id).where(Session.token == token))
                    trials = list(db_session.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))
                seen: dict[tuple[str, int], int] = {}  # answered so far, by kind and truth
                for t in trials:
                    value = decide(t, seen)
                    seen[(t.kind, t.fake_slot)] = seen.get((t.kind, t.fake_slot), 0) + 1
                    assert open_trial(client, token, t.index).status_code == 200
                    assert client.post(f"/api/s/{token}/answer", json={"index": t.index, "answer": value}).status_code == 200
    finally:
        app.state.engine.dispose()


def fooled_on(count: int):  # noqa: ANN201
    """2afc / sequential, question "fake": the fake is judged real (the real one picked) on the first ``count``
    test trials; practice answered right."""
    def decide(t, seen: dict) -> str:  # noqa: ANN001
        main_before = seen.get(("main", 1), 0) + seen.get(("main", 2), 0)
        return str(3 - t.fake_slot if t.kind == "main" and main_before < count else t.fake_slot)

    return decide


def paper(db: str, capsys, tmp_path: Path) -> tuple[str, dict]:  # noqa: ANN001
    out = tmp_path / "r.json"
    assert main(["study", "report", "--db", db, "--study", "s", "--format", "paper", "--json", str(out)]) == 0
    return capsys.readouterr().out, json.loads(out.read_text())


def test_2afc_table_as_pix2pix_tables_4_5(tmp_path: Path, image_dirs, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 'a.db'}"
    _make(db, image_dirs)
    # arrival order alternates the algorithms: p1, p3, p5 -> alg_a; p2, p4 -> alg_b
    _run(db, {"p1": fooled_on(1), "p2": fooled_on(2), "p3": fooled_on(3), "p4": fooled_on(4), "p5": fooled_on(0)})
    text, report = paper(db, capsys, tmp_path)
    # alg_a: 1/4, 3/4, 0/4 -> mean 1/3 = 33.3%; sample sd of (.25, .75, 0) = 0.38188; SE = 0.38188 / sqrt(3) = 22.0%
    # alg_b: 2/4, 4/4 -> 75.0%; sd 0.35355, SE 0.25 = 25.0%.  Difference a - b = -41.7 points.
    assert "AMT-style \"real vs fake\" test, study s (side by side, real and fake from different inputs" in text
    assert "| Method | % labeled real (mean ± SE) | 95% CI | participants | trials |" in text
    lo, hi = (100 * v for v in report["algorithms"]["alg_a"]["labeled_real"]["ci95"])
    assert f"| alg_a | 33.3% ± 22.0% | [{lo:.1f}, {hi:.1f}] | 3 | 12 |" in text
    assert "| alg_b | 75.0% ± 25.0% |" in text and "| 2 | 8 |" in text
    assert "- alg_a - alg_b (% labeled real): -41.7 points, 95% CI [" in text
    assert "alg_a: 3 included, 0 excluded (0 by the vigilance rule), 0 incomplete" in text
    assert 0 <= lo <= 33.3 <= hi <= 100


def test_sequential_table_is_the_fooling_rate(tmp_path: Path, image_dirs, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 's.db'}"
    _make(db, image_dirs, protocol="sequential", fake={"alg_a": str(image_dirs["alg_a"])})
    _run(db, {"p1": fooled_on(1), "p2": fooled_on(2)})
    text, _ = paper(db, capsys, tmp_path)
    # 1/4 and 2/4 -> 37.5%; sd of (.25, .5) = 0.17678, SE 0.125
    assert "Sequential real-vs-fake test" in text and "| Method | Fooling rate (mean ± SE) |" in text
    assert "| alg_a | 37.5% ± 12.5% |" in text


def test_single_table_is_percent_correct_per_group(tmp_path: Path, image_dirs, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 'q.db'}"
    _make(db, image_dirs, protocol="single", practice=0, trials=8, fake={"alg_a": str(image_dirs["alg_a"])})
    # each sees 4 real + 4 fake.  p1: wrong on 1 real and 2 fakes; p2: right on all reals, wrong on 3 fakes
    wrong = {"p1": {0: 1, 1: 2}, "p2": {0: 0, 1: 3}}

    _run(db, {pid: wrong_first(errors) for pid, errors in wrong.items()})
    text, _ = paper(db, capsys, tmp_path)
    # real: 3/4, 4/4 -> 87.5% +- 12.5%; fake: 2/4, 1/4 -> 37.5% +- 12.5%
    assert "Quick-response single-image test" in text
    row = next(line for line in text.splitlines() if line.startswith("| alg_a |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "87.5% ± 12.5%" and cells[3] == "37.5% ± 12.5%" and cells[5] == "2"


def wrong_first(errors: dict[int, int]):  # noqa: ANN201
    """A single-image participant who answers wrongly on its first ``errors[fake_slot]`` main trials of each
    kind (0 = real image, 1 = fake) and rightly after."""
    def answer(t, seen: dict) -> str:  # noqa: ANN001
        truth = "fake" if t.fake_slot else "real"
        flipped = {"real": "fake", "fake": "real"}[truth]
        return flipped if seen.get(("main", t.fake_slot), 0) < errors[t.fake_slot] else truth
    return answer


def test_text_format_is_unchanged_by_default(tmp_path: Path, image_dirs, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 't.db'}"
    _make(db, image_dirs)
    assert main(["study", "report", "--db", db, "--study", "s"]) == 0
    assert capsys.readouterr().out.startswith("study s (2afc, question: which is fake;")


@pytest.fixture
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.study.loadgen import write_noise_folders

    return write_noise_folders(tmp_path_factory.mktemp("paper"), count=12, side=16)


def test_hype_inf_table_is_the_error_rates(tmp_path: Path, image_dirs, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 'h.db'}"
    _make(db, image_dirs, protocol="hype-inf", practice=0, trials=8, fake={"alg_a": str(image_dirs["alg_a"])})
    wrong = {"p1": {0: 0, 1: 1}, "p2": {0: 1, 1: 2}}  # errors on reals (0) and on fakes (1), of 4 each

    _run(db, {pid: wrong_first(errors) for pid, errors in wrong.items()})
    text, _ = paper(db, capsys, tmp_path)
    # error: 1/8, 3/8 -> 25.0% +- 12.5%; fakes: 1/4, 2/4 -> 37.5% +- 12.5%; reals: 0/4, 1/4 -> 12.5% +- 12.5%
    assert "HYPE-infinity, study s" in text
    row = next(line for line in text.splitlines() if line.startswith("| alg_a |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (cells[1], cells[3], cells[5], cells[7]) == ("25.0% ± 12.5%", "37.5% ± 12.5%", "12.5% ± 12.5%", "2")
