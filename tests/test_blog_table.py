"""The blog post "pix2pix Image Translation"'s network in a Facades report beside pix2pix: the table spec, and the
table end to end at the smoke preset (one step per row) with the blog row's scores against skimage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from p2p_eval.ablation import tables
from p2p_eval.ablation.tables import TABLES_DIR, load_table
from p2p_eval.config import load_generator

SPEC = TABLES_DIR / "blog.toml"


def test_blog_table_spec() -> None:
    spec = load_table("blog", SPEC)
    assert (spec.name, spec.kind, spec.data) == ("blog", "image", "facades")
    assert [r.generator for r in spec.rows] == ["l1_cgan", "resnet9_l1_cgan", "blog_resnet9"]
    assert spec.metrics == load_table("modified").metrics  # the Modified-pix2pix table's columns
    assert all(r.paper == {} for r in spec.rows)  # the blog prints no numbers
    blog = load_generator(spec.rows[2].generator_file, {"size": 64})
    assert (blog.arch, blog.d_arch, blog.d_input, blog.lambda_l1, blog.lambda_l2) == ("resnet", "global", "sum", 0, 1)


@pytest.mark.slow
def test_blog_table_smoke(tmp_path: Path) -> None:
    from skimage.metrics import mean_squared_error, structural_similarity

    from p2p_eval.ablation import run_ablation
    from p2p_eval.ablation.synth_facades import generate_facades
    from p2p_eval.metrics.color import load_photo

    assert tables.TABLES["blog"] == SPEC
    facades = generate_facades(tmp_path / "data", train=4, val=3, size=64)
    report = run_ablation("blog", facades, None, tmp_path / "report", preset="smoke", runs_dir=tmp_path / "runs",
                          device="cpu", overrides={"max_steps": 1, "ngf": 8, "ndf": 8}, progress=False)
    for name in ("blog.md", "blog.csv", "report.json", "index.html"):
        assert (report / name).is_file(), name
    table = json.loads((report / "report.json").read_text())["tables"][0]
    assert [r["label"] for r in table["rows"]][2].startswith("blog network")
    row = table["rows"][2]
    cfg = load_generator(tmp_path / "runs" / row["run"] / "config.toml")
    assert (cfg.arch, cfg.d_arch, cfg.d_input, cfg.lambda_l2, cfg.size) == ("resnet", "global", "sum", 1.0, 32)
    (record,) = [json.loads(line) for line in (tmp_path / "runs" / row["run"] / "log.jsonl").read_text().splitlines()]
    assert {"G_GAN", "G_L2", "D_real", "D_fake"} <= set(record) and "G_L1" not in record  # the blog's two losses
    fakes = tmp_path / "runs" / row["run"] / "translated" / "val"
    mse, ssim = [], []
    for real_file in sorted((facades / "val").iterdir()):
        real = load_photo(real_file, "A", 32).permute(1, 2, 0).numpy()
        fake = load_photo(fakes / f"{real_file.stem}.png", None, 32).permute(1, 2, 0).numpy()
        mse.append(mean_squared_error(real, fake) / 255**2)
        ssim.append(structural_similarity(real, fake, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255, channel_axis=-1))
    assert row["ours"]["mse"] == pytest.approx(np.mean(mse), rel=1e-6)
    assert row["ours"]["ssim"] == pytest.approx(np.mean(ssim), rel=1e-4)
    assert "| blog network (ResNet-9, five-layer D on x + y, L2 + classification) |" in (report / "blog.md").read_text()
