"""Scores of one row's translations for the tables that are not FCN-score tables.

- ``labels`` (pix2pix Table 6, section 4.6): :func:`p2p_eval.metrics.labelmap.score_label_folder`.
- ``image`` (the comparison of "Modified Pix2Pix Conditional Adversarial Networks for Image-to-Image
  Translation"): :func:`score_images`: MSE, PSNR and SSIM of each generated photo against its real photo
  (:func:`p2p_eval.metrics.image.compare_folders`: MSE on [0, 1] images, the document's unit, in which its
  "per-pixel accuracy" 0.0021 goes with its PSNR 26.8 dB), averaged over images as the document does; LPIPS the
  same way when weights are given; the Lab histogram intersections of the whole set with the real set
  (:func:`p2p_eval.metrics.color.compare_sets`, pix2pix's Figure 7 measure). 95% intervals of the per-image means
  are ``compare_folders``' (``p2p-eval metrics`` prints the same): percentile bootstrap over images with the
  FCN-score's resamples (:mod:`p2p_eval.metrics.bootstrap`, 1000 replicates, seed 0); the set-level Lab
  intersections have none.

Real and generated photos are compared at the generated images' side (the real ones resized, bilinear with
antialiasing, by ``load_photo``), so both pass through the same resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_METRICS = ("mse", "psnr", "ssim")


def target_half(direction: str) -> str:
    """The AB half holding a row's target: A for BtoA (labels -> photo on pix2pix's files), B for AtoB."""
    return "A" if direction == "BtoA" else "B"


def score_images(fakes: str | Path, data_dir: str | Path, size: int, direction: str,
                 lpips: dict[str, str] | None = None, device: str = "auto", bootstrap: int = 1000, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Image metrics of the generated val photos in ``fakes`` against DATA/val's targets at ``size`` px.

    ``lpips``: {"weights": AlexNet file, "lin": linear layers or ""} adds LPIPS. Returns the score JSON:
    {"mse", "psnr", "ssim", "lab_L", "lab_a", "lab_b", ["lpips"], "ci95": {...}, "images", "protocol"}.
    """
    from p2p_eval.metrics.color import compare_sets
    from p2p_eval.metrics.image import compare_folders

    half = target_half(direction)
    real = Path(data_dir) / "val"
    metrics = [*IMAGE_METRICS, *(["lpips"] if lpips else [])]
    res = compare_folders(real, {"row": fakes}, metrics, lpips_weights=(lpips or {}).get("weights"),
                          lpips_lin=(lpips or {}).get("lin") or None, half=half, size=size, device=device,
                          progress=progress, bootstrap=bootstrap, seed=seed)["metrics"]["row"]
    out: dict[str, Any] = {"ci95": {}}
    for name in metrics:
        out[name] = res[name]["mean"]
        out["ci95"][name] = res[name]["ci95"]
        out["images"] = res[name]["count"]
    lab = compare_sets(real, {"row": fakes}, size=size, half=half, progress=progress)["intersection"]["row"]
    for channel, value in lab.items():
        out[f"lab_{channel}"] = float(value)
        out["ci95"][f"lab_{channel}"] = [None, None]
    out["protocol"] = {"size": size, "target_half": half, "mse_scale": "[0, 1] images (0-255 values / 255)",
                       "means": "per-image values averaged over the val set", "lab": "set-level histogram intersection",
                       "lpips": bool(lpips)}
    return out
