"""The shipped segmenter: an fp16 safetensors file of at most 50 MB whose sha256 is the one its model card
states, loadable without pickle, used by fcn-score when no --segmenter is given; on the real val set it
scores what its card says."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_eval.cli import main
from p2p_eval.segmentation.model import load_segmenter, shipped_card, shipped_path


def _card_sha() -> str:
    match = re.search(r"\*\*sha256\*\*: `([0-9a-f]{64})`", shipped_card().read_text())
    assert match, "the model card states no sha256"
    return match.group(1)


def test_shipped_file_is_fp16_safetensors_with_the_cards_sha256() -> None:
    from safetensors import safe_open

    path = shipped_path()
    assert path.is_file() and path.stat().st_size <= 50 * 2 ** 20
    assert hashlib.sha256(path.read_bytes()).hexdigest() == _card_sha()
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata()
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
    assert header["format"] == "p2p-eval-segmenter/1"                # the first shipped file's two-key header
    meta = json.loads(header["meta"])
    assert meta["input_size"] == 256 and len(meta["classes"]) == 19 and meta["weights_dtype"] == "float16"
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    model, loaded = load_segmenter(None, "cpu")
    assert loaded["sha256"] == _card_sha() and not model.training


def test_segmenter_info_prints_the_card(capsys: pytest.CaptureFixture) -> None:
    assert main(["segmenter", "info"]) == 0
    out = capsys.readouterr().out
    assert _card_sha() in out and "shipped default" in out and "cityscapes256.md" in out


@pytest.mark.realdata
def test_fcn_score_defaults_to_the_shipped_segmenter(shared_data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for n in (1, 2, 3):
        ab = Image.open(shared_data / "cityscapes" / "val" / f"{n}.jpg").convert("RGB")
        ab.crop((0, 0, ab.width // 2, ab.height)).save(images / f"{n}_fake_B.png")
    out = tmp_path / "res.json"
    assert main(["fcn-score", "--images", str(images), "--data", str(shared_data / "cityscapes"), "--json", str(out),
                 "--device", "cpu", "--bootstrap", "50", "--quiet"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["segmenter"]["sha256"] == _card_sha() and res["segmenter"]["name"] == "cityscapes256.safetensors"
    assert _card_sha() in printed and "cityscapes256" in printed
    assert res["images"] == 3 and res["subset"] is True and res["frames_available"] == 500


@pytest.mark.realdata
@pytest.mark.slow
def test_real_val_scores_match_the_card(shared_data: Path) -> None:
    from p2p_eval.metrics.fcn_score import score_folder

    res = score_folder(None, None, data_dir=shared_data / "cityscapes", real=True, device="cpu", bootstrap=0,
                       progress=False)
    card = load_segmenter(None, "cpu")[1]["val"]
    assert res["images"] == 500
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert res[key] == pytest.approx(card[key], abs=0.005), key
    text = shipped_card().read_text()
    assert f"| class IoU | {card['class_iou']:.3f} |" in text
