"""A real install: the wheel of this checkout, installed without its dependencies into a fresh virtualenv that
reuses this environment's packages, works from a folder outside the checkout (``--help``, a generator name
resolved against the packaged variants, ``ablate --table 1 --preset smoke`` on the tiny synthetic set), and
the wheel carries the package data (generator variants from the top-level ``generators/``, table specs, study
pages, shipped segmenter files).

The new environment sees this one's site-packages through a plain path line in a ``.pth`` file; such a line
does not run the ``.pth`` files inside that folder, so the checkout's editable finder stays out and
``p2p_eval`` is imported from the wheel (asserted)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "p2p_eval"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(cmd: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _ok(cmd: list[str | Path], cwd: Path) -> str:
    done = _run(cmd, cwd)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (setuptools' ``build/`` in the checkout could hold stale files)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("p2p_eval", "generators"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    _ok([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out],
        cwd=src)
    (found,) = out.glob("p2p_eval-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv (system site-packages + this environment's through a ``.pth`` line) with the wheel installed."""
    root = tmp_path_factory.mktemp("venv") / "env"
    _ok([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root], cwd=root.parent)
    python = root / "bin" / "python"
    purelib = Path(_ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip())
    (purelib / "parent_env.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    # --ignore-installed: this environment's editable p2p-eval is visible too; pip must neither skip nor touch it
    _ok([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel], cwd=root)
    return root


def test_wheel_carries_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [p.relative_to(REPO).as_posix()
                for pattern in ("tables/*.toml", "study/static/**/*", "segmentation/weights/*")
                for p in PACKAGE.glob(pattern) if p.is_file()]
    # the top-level generators/ goes into the wheel as p2p_eval/generators/
    expected += [f"p2p_eval/generators/{p.name}" for p in (REPO / "generators").glob("*.toml")]
    # Tables 1-3 (12), two extensions (ResNet-9, L1+cGAN+rec), Table 6 (3), the ablation of "Modified Pix2Pix" (3)
    assert sum(n.startswith("p2p_eval/generators/") for n in expected) == 28
    assert sum(n.startswith("p2p_eval/tables/") for n in expected) == 6  # tables 1-3, 6, modified, blog
    assert not sorted(set(expected) - names)


def test_installed_toolkit_runs_outside_the_checkout(venv: Path, synth_small: Path, ablation_segmenter: Path,
                                                      tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    origin = Path(_ok([venv / "bin" / "python", "-c", "import p2p_eval; print(p2p_eval.__file__)"], cwd=cwd).strip())
    assert origin.resolve().is_relative_to(venv.resolve()) and not origin.resolve().is_relative_to(REPO), origin
    cli = venv / "bin" / "p2p-eval"
    assert "ablate" in _ok([cli, "--help"], cwd) and "--generator" in _ok([cli, "train", "--help"], cwd)

    unknown = _run([cli, "train", "--generator", "l1_cgna", "--data", synth_small, "--out", cwd / "run"], cwd)
    assert unknown.returncode == 2 and "unknown generator 'l1_cgna'" in unknown.stderr and "l1_cgan_d286" in unknown.stderr

    _ok([cli, "ablate", "--table", "1", "--preset", "smoke", "--data", synth_small, "--segmenter", ablation_segmenter,
         "--out", cwd / "report", "--runs-dir", cwd / "runs", "--max-steps", "1", "--device", "cpu", "--quiet"], cwd)
    table = (cwd / "report" / "table1.md").read_text()
    for label in ("L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN", "Ground truth"):
        assert f"| {label} |" in table, label
    assert (cwd / "report" / "report.json").is_file() and len(list((cwd / "runs").glob("*/DONE"))) == 5
