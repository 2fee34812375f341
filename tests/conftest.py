"""Shared fixtures: the real data beside the checkout (../shared/data) and small temp data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that use it are marked ``realdata`` and skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-scene synthetic set at 64x64 (train/ + val/ + *_labels/), made once per test session."""
    from p2p_eval.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth64")
    generate_dataset(out, count=24, size=64, seed=0, val_fraction=0.25)
    return out
