"""The one-to-many framework learns an unpaired mapping: X = white shapes (discs, squares) on black, Y = the
same kind of shapes red on blue, drawn independently (never paired).  After 150 steps its X -> Y translation of
held-out shapes is closer to their true colouring than the constant best guess, the mean Y image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2p_eval.imageio import from_unit_range, write_png
from p2p_eval.one_to_many.config import OneToManyConfig
from p2p_eval.one_to_many.trainer import train
from p2p_eval.one_to_many.translate import load_run

S = 64
RED, BLUE = torch.tensor([1.0, -1.0, -1.0])[:, None, None], torch.tensor([-1.0, -1.0, 0.6])[:, None, None]


def shape(g: torch.Generator) -> torch.Tensor:
    """A (S, S) mask in {0, 1}: a disc or a square of random centre and size."""
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    cy, cx = torch.randint(16, 48, (2,), generator=g).tolist()
    r = int(torch.randint(6, 14, (1,), generator=g))
    if float(torch.rand(1, generator=g)) < 0.5:
        return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
    return (((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)).float()


def as_x(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1).expand(3, S, S)


def as_y(mask: torch.Tensor) -> torch.Tensor:
    return mask * RED + (1 - mask) * BLUE


@pytest.mark.slow
def test_unpaired_shapes_to_coloured_shapes_beat_the_mean_image(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    for i in range(40):
        write_png(tmp_path / "x" / f"{i}.png", from_unit_range(as_x(shape(g))))
        write_png(tmp_path / "y" / f"{i}.png", from_unit_range(as_y(shape(g))))
    held_out = [shape(g) for _ in range(20)]
    mean_y = torch.stack([as_y(shape(g)) for _ in range(200)]).mean(0)
    cfg = OneToManyConfig(size=S, ngf=8, ndf=8, epochs=1000, max_steps=150, lr_schedule="constant", log_every=50)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these tiny convolutions run faster on one thread than split over two
    try:
        train(cfg, tmp_path / "x", tmp_path / "y", tmp_path / "run", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    model, _ = load_run(tmp_path / "run", torch.device("cpu"))
    xs, ys = torch.stack([as_x(m) for m in held_out]), torch.stack([as_y(m) for m in held_out])
    with torch.no_grad():
        out = model.translate(xs, "x", torch.zeros(len(held_out), cfg.code_dim))
    model_error, baseline_error = float((out - ys).abs().mean()), float((mean_y - ys).abs().mean())
    assert model_error < 0.7 * baseline_error, (model_error, baseline_error)
