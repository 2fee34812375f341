"""pyproject.toml lists every package folder of the checkout, so that the wheel and the editable install carry all
of them, and maps the top-level ``generators/`` (the design card's layout) into the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_folder_under_the_package_is_listed() -> None:
    package = REPO / "p2p_eval"
    on_disk = {".".join(folder.relative_to(REPO).parts) for folder in [package, *package.rglob("*")]
               if folder.is_dir() and folder.name != "__pycache__"
               and any(f.is_file() and f.suffix != ".pyc" for f in folder.iterdir())}
    listed = set(_setuptools()["packages"])
    assert listed == on_disk | {"p2p_eval.generators", "p2p_eval.generators.one_to_many"}


def test_the_generator_variants_come_from_the_top_level_folder() -> None:
    config = _setuptools()
    assert config["package-dir"] == {"p2p_eval.generators": "generators"}
    assert config["package-data"]["p2p_eval.generators"] == ["*.toml"]
    assert config["package-data"]["p2p_eval.generators.one_to_many"] == ["*.toml"]
    assert len(list((REPO / "generators").glob("*.toml"))) == 28
    assert sorted(p.name for p in (REPO / "generators" / "one_to_many").glob("*.toml")) == [
        "vib.toml", "vib_no_ds_cycle.toml"]
    assert not (REPO / "p2p_eval" / "generators").exists()
