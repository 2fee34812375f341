"""``p2p-eval demo`` writes only under its work folder (``make demo`` must leave the checkout untouched); the
stages are replaced by recorders, so this checks where things go, not what they compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2p_eval.cli import main


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the three stages of the demo by functions that record their output paths and touch them."""
    calls: dict[str, Any] = {}

    def synth(out: Path, **kwargs: Any) -> None:
        calls["data"] = Path(out)
        (Path(out) / "val").mkdir(parents=True)

    def segmenter(data: Path, out_path: Path, **kwargs: Any) -> Path:
        calls["segmenter"] = Path(out_path)
        Path(out_path).write_bytes(b"")
        return Path(out_path)

    def ablation(tables: Any, data: Path, seg: Path, report_dir: Path, **kwargs: Any) -> Path:
        if tables == ["modified"]:  # the Facades table, on the synthetic facades, into REPORT/facades
            calls["facades"] = (Path(data), Path(report_dir))
        else:
            calls["report"], calls["runs"] = Path(report_dir), Path(kwargs["runs_dir"])
        Path(report_dir).mkdir(parents=True)
        return Path(report_dir)

    monkeypatch.setattr("p2p_eval.data.synth.generate_dataset", synth)
    monkeypatch.setattr("p2p_eval.segmentation.train.train_segmenter", segmenter)
    monkeypatch.setattr("p2p_eval.ablation.run_ablation", ablation)
    monkeypatch.setattr("p2p_eval.ablation.html.refresh_index", lambda out: calls.setdefault("refreshed", Path(out)))
    return calls


def test_demo_writes_only_under_out(recorded: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["demo", "--out", "work", "--device", "cpu"]) == 0
    work = Path("work")
    assert recorded == {"data": work / "synth", "segmenter": work / "segmenter.pt", "report": work / "report",
                        "runs": work / "runs", "facades": (work / "synth_facades", work / "report" / "facades"),
                        "refreshed": work / "report"}
    assert sorted(p.name for p in cwd.iterdir()) == ["work"]
    assert "work/report/index.html" in capsys.readouterr().out


def test_demo_report_elsewhere_on_request(recorded: dict[str, Any], tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "w"), "--report", str(tmp_path / "reports" / "smoke")]) == 0
    assert recorded["report"] == tmp_path / "reports" / "smoke" and recorded["runs"] == tmp_path / "w" / "runs"
