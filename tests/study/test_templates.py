"""The study templates in benchmarks/studies/: each loads with ``study create --config``, creates a study on
small image folders, and a simulated run of it gives its paper-style report; the source-protocol templates state
every setting and cite their source; source 004's plan is 25 real + 25 generated distinct images."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import analyse, format_paper
from tests.study.loadgen import write_noise_folders
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.plan import create_study, load_spec
from p2p_eval.study.simulate import FoolingPopulation, simulate
from p2p_eval.study.store import make_engine

STUDIES = Path(__file__).resolve().parents[2] / "benchmarks" / "studies"
TEMPLATES = sorted(STUDIES.glob("*.toml"))
SOURCE_TEMPLATES = [p for p in TEMPLATES if not p.name.startswith("hype")]  # HYPE's are tested with the HYPE code
EVERY_SETTING = {"name", "real", "fake", "protocol", "paired", "trials", "practice", "display_ms", "vigilance",
                 "vigilance_max_errors", "question", "seed", "same_processing", "serve_size", "jpeg_quality",
                 "allow_repeats"}
HEADERS = {"2afc": "% labeled real (mean ± SE)", "sequential": "Fooling rate (mean ± SE)",
           "single": "Control (real images) % correct", "hype-time": "| Method | HYPE-time threshold (ms, mean ± SE) |",
           "hype-inf": "| Method | HYPE-inf error (mean ± SE) |"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """real/ and four generated folders of 60 tiny PNGs with matching names (enough for paired 10 + 40 and for
    25 + 25 distinct single images)."""
    return write_noise_folders(tmp_path_factory.mktemp("templates"), names=("real", "g1", "g2", "g3", "g4"),
                               count=60, side=16)


def overrides(path: Path, folders: dict[str, Path]) -> dict:
    algorithms = list(tomllib.loads(path.read_text()).get("fake", {})) or ["pix2pix"]
    return {"real": str(folders["real"]), "fake": {alg: str(folders[f"g{i + 1}"]) for i, alg in enumerate(algorithms)}}


def test_there_are_templates_for_every_source() -> None:
    names = {p.stem for p in SOURCE_TEMPLATES}
    assert {"pix2pix_maps_map2photo", "pix2pix_maps_photo2map", "pix2pix_colorization", "source003_sequential",
            "source004_quick_response"} <= names


@pytest.mark.parametrize("path", SOURCE_TEMPLATES, ids=lambda p: p.stem)
def test_template_states_every_setting_and_its_source(path: Path) -> None:
    text = path.read_text()
    keys = set(tomllib.loads(text))
    assert EVERY_SETTING <= keys, f"{path.name} leaves out {sorted(EVERY_SETTING - keys)}"
    assert "redirect_url" in text  # optional; shown commented out
    assert "Source" in text and "p2p-eval study create" in text


@pytest.mark.parametrize("path", SOURCE_TEMPLATES, ids=lambda p: p.stem)
def test_template_folders_are_placeholders(tmp_path: Path, path: Path) -> None:
    spec = load_spec(path, {})
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with pytest.raises(UserError, match="REPLACE-ME"):
            create_study(engine, spec)
    finally:
        engine.dispose()


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_creates_a_study_and_a_simulated_run_reports(tmp_path: Path, folders: dict[str, Path],
                                                              path: Path) -> None:
    spec = load_spec(path, overrides(path, folders))
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        notes: list[str] = []
        study, _ = create_study(engine, spec, notes)
        assert study.protocol == spec.protocol and (not spec.paired or notes)
        per_alg = 1 if spec.protocol.startswith("hype") else 2
        rates = {alg: 0.1 + 0.1 * i for i, alg in enumerate(spec.fake)}
        simulate(engine, spec.name, per_alg * len(spec.fake), FoolingPopulation(rates, lapse=0.02), progress=False)
        report = analyse(engine, spec.name, n_boot=200)
    finally:
        engine.dispose()
    assert all(e["included"] == per_alg for e in report["algorithms"].values())
    paper = format_paper(report)
    assert HEADERS[spec.protocol] in paper
    for alg in spec.fake:
        assert f"| {alg} |" in paper


def test_cli_create_from_a_template(tmp_path: Path, folders: dict[str, Path], capsys) -> None:
    from p2p_eval.cli import main

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["study", "create", "--db", db, "--config", str(STUDIES / "pix2pix_maps_map2photo.toml"),
                 "--real", str(folders["real"]), "--images", f"l1={folders['g1']}",
                 "--images", f"l1_cgan={folders['g2']}"]) == 0
    assert "created study pix2pix_maps_map2photo (2afc, 2 algorithms: l1, l1_cgan)" in capsys.readouterr().out
    assert main(["study", "create", "--db", db, "--config", str(STUDIES / "pix2pix_maps_photo2map.toml")]) == 2
    assert "REPLACE-ME/real_maps" in capsys.readouterr().err


def test_quick_response_plan_is_25_real_and_25_generated_distinct_images(tmp_path: Path, folders) -> None:  # noqa: ANN001
    path = STUDIES / "source004_quick_response.toml"
    spec = load_spec(path, overrides(path, folders))
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        create_study(engine, spec)
        simulate(engine, spec.name, 3, FoolingPopulation({"pix2pix": 0.4}, false_alarm={"pix2pix": 0.28}),
                 images=False, progress=False)
        with OrmSession(engine) as db:
            plans = {}
            for sid, kind, fake_slot, image in db.execute(select(Session.id, Trial.kind, Trial.fake_slot, Trial.img1_id)
                                                          .join(Session, Trial.session_id == Session.id)):
                plans.setdefault(sid, []).append((kind, fake_slot, image))
    finally:
        engine.dispose()
    assert len(plans) == 3
    for trials in plans.values():
        assert {kind for kind, _, _ in trials} == {"main"} and len(trials) == 50
        for group in (0, 1):
            images = [image for _, slot, image in trials if slot == group]
            assert len(images) == 25 and len(set(images)) == 25


def test_the_table_4_and_5_templates_name_shipped_variants() -> None:
    import re

    from p2p_eval.config import generator_names

    named = {f: re.findall(r"--generator (\w+)", (STUDIES / f).read_text())
             for f in ("pix2pix_maps_map2photo.toml", "pix2pix_maps_photo2map.toml", "pix2pix_colorization.toml")}
    assert named == {"pix2pix_maps_map2photo.toml": ["maps_map2photo_l1", "maps_map2photo"],
                     "pix2pix_maps_photo2map.toml": ["maps_photo2map_l1", "maps_photo2map"],
                     "pix2pix_colorization.toml": ["colorization", "colorization_l2"]}
    assert set(sum(named.values(), [])) <= set(generator_names())
