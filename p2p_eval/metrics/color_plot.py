"""The plot of pix2pix's Figure 7 (Isola et al., CVPR 2017, section 4.2 "Colorfulness"): the marginal L, a and b
distributions of each generated set against the ground truth, one panel per channel, as base-10 log probability
against the channel's value; the ground truth dotted black, one solid line per set.

One legend under the three panels names each set with its histogram intersections (L, a, b) against the ground
truth. A bin without pixels has no logarithm: it is left as a gap in its line, and the caption says so. The
functions take plain bin counts and edges (from :class:`p2p_eval.metrics.color.LabHistogram`), so this module
imports nothing of the metric's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from p2p_eval.fsutil import atomic_write_bytes

CAPTION = ("log10 of the share of pixels in each one-unit bin; ground truth dotted. Gaps: bins with no pixels "
           "(log10 0 is undefined).")


def log10_share(counts: np.ndarray) -> np.ndarray:
    """log10 of each bin's share of the pixels; NaN (a gap in a line) where the bin is empty."""
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / counts.sum()
    return np.log10(share, out=np.full_like(share, np.nan), where=share > 0)


def lab_figure(real: Mapping[str, np.ndarray], fakes: Mapping[str, Mapping[str, np.ndarray]],
               scores: Mapping[str, Mapping[str, float]], edges: Mapping[str, np.ndarray],
               title: str | None = None) -> Any:
    """The matplotlib figure: ``real`` and each ``fakes[SET]`` map a channel to its bin counts, ``scores[SET]`` a
    channel to the intersection, ``edges`` a channel to its bin edges (the channels, in panel order)."""
    import matplotlib  # here, not at the top: matplotlib is slow to import and only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = list(edges)
    fig, axes = plt.subplots(1, len(channels), figsize=(13, 5.2), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    lines = []
    for ax, c in zip(axes[0], channels):
        centres = (edges[c][:-1] + edges[c][1:]) / 2
        lines = [ax.plot(centres, log10_share(counts[c]), color=colors[k % 10], lw=1.6)[0]
                 for k, counts in enumerate(fakes.values())]
        lines.append(ax.plot(centres, log10_share(real[c]), color="black", ls=":", lw=2.0)[0])
        used = np.nonzero(np.asarray(real[c]) + sum(np.asarray(f[c]) for f in fakes.values()))[0]
        if used.size:
            ax.set_xlim(edges[c][max(used[0] - 2, 0)], edges[c][min(used[-1] + 3, len(edges[c]) - 1)])
        ax.set(xlabel=c, ylabel=f"log10 P({c})")
        ax.grid(alpha=0.3)
    labels = [f"{name} (intersection " + ", ".join(f"{c} {scores[name][c]:.2f}" for c in channels) + ")"
              for name in fakes] + ["ground truth"]
    fig.legend(lines, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    fig.suptitle(title or "Lab colour distributions")
    fig.text(0.5, 0.9, CAPTION, ha="center", fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(labels) + 2) // 3), 1, 0.9))
    return fig


def plot_lab_histograms(real: Mapping[str, np.ndarray], fakes: Mapping[str, Mapping[str, np.ndarray]],
                        scores: Mapping[str, Mapping[str, float]], edges: Mapping[str, np.ndarray],
                        out: str | Path, title: str | None = None) -> Path:
    """Write :func:`lab_figure` as a PNG to ``out`` (atomically); returns ``out``."""
    import matplotlib.pyplot as plt

    fig = lab_figure(real, fakes, scores, edges, title)
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(out, buffer.getvalue())
