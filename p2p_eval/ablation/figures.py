"""Figures of the ablation report: Figure 7 (Lab colour histograms of L1, cGAN, L1+cGAN and the 1x1 PixelGAN
against the real photos, pix2pix section 4.2, via :func:`p2p_eval.metrics.color.compare_sets`) and one sample
grid per table (input | each row's output | target) for the first few val images.
"""

from __future__ import annotations

import textwrap
from io import BytesIO
from pathlib import Path

import torchvision.transforms.v2.functional as F

from p2p_eval.data.aligned import AlignedDataset
from p2p_eval.fsutil import atomic_write_bytes
from p2p_eval.imageio import from_unit_range, read_image

#: Figure 7's sets in the paper's legend order: label -> generator variant.
FIGURE7_SETS = {"L1": "l1", "cGAN": "cgan", "L1+cGAN": "l1_cgan", "PixelGAN (1x1)": "l1_cgan_d1"}
SAMPLE_IMAGES = 4
TILE = 128


def figure7(data_dir: Path, fakes: dict[str, Path], size: int, direction: str, out_dir: Path,
            progress: bool = True) -> dict | None:
    """``figure7.png`` + ``figure7.json`` for the Figure 7 sets present in ``fakes`` (generator -> folder);
    the real set is the target half of DATA/val at ``size``. None when no Figure 7 set was run."""
    from p2p_eval.metrics.color import compare_sets

    sets = {label: fakes[gen] for label, gen in FIGURE7_SETS.items() if gen in fakes}
    if not sets:
        return None
    half = "A" if direction == "BtoA" else "B"
    result = compare_sets(Path(data_dir) / "val", sets, plot=out_dir / "figure7.png", json_out=out_dir / "figure7.json",
                          size=size, half=half, progress=progress)
    return {"intersection": result["intersection"], "sets": {k: FIGURE7_SETS[k] for k in sets}, "size": size,
            "png": "figure7.png", "json": "figure7.json"}


def sample_grid(out: Path, data_dir: Path, direction: str, columns: list[tuple[str, Path]],
                count: int = SAMPLE_IMAGES) -> Path:
    """A PNG grid: one line per val image (the first ``count`` in natural order), columns input | each
    (label, folder of outputs) | target, every tile resized to :data:`TILE` px."""
    import matplotlib  # here, not at the top: matplotlib is slow to import and only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = AlignedDataset(data_dir, "val", direction=direction, size=TILE, jitter=False)
    n = min(count, len(data))
    titles = ["input", *[label for label, _ in columns], "target"]
    fig, axes = plt.subplots(n, len(titles), figsize=(1.25 * len(titles), 1.35 * n + 0.3), squeeze=False)
    for i in range(n):
        item = data[i]
        tiles = [from_unit_range(item["input"])]
        for _, folder in columns:
            fake = read_image(Path(folder) / f"{item['name']}.png")
            tiles.append(F.resize(fake, [TILE, TILE], antialias=True))
        tiles.append(from_unit_range(item["target"]))
        for j, tile in enumerate(tiles):
            ax = axes[i][j]
            ax.imshow(tile[:3].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(textwrap.fill(titles[j], 18), fontsize=6)  # long row names wrap inside their column
            if j == 0:
                ax.set_ylabel(f"val {item['name']}", fontsize=7)
    fig.tight_layout(pad=0.3)
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())
