"""Unpaired draws: an epoch is as long as the larger folder, each folder permuted once per epoch (the smaller
one's permutation repeated), reproducible from the seed and replayed from a saved state."""

from __future__ import annotations

from pathlib import Path

import torch

from p2p_eval.imageio import read_image, to_unit_range
from p2p_eval.one_to_many.data import UnpairedData, UnpairedOrder


def test_an_epoch_permutes_both_folders() -> None:
    order = UnpairedOrder(3, 5, seed=4)
    order.start_epoch()
    xs, ys = [p[0] for p in order.picks], [p[1] for p in order.picks]
    assert len(order.picks) == 5
    assert sorted(ys) == [0, 1, 2, 3, 4]
    assert sorted(xs[:3]) == [0, 1, 2] and xs[3:] == xs[:2]
    assert all(isinstance(p[2], bool) and isinstance(p[3], bool) for p in order.picks)


def test_the_same_seed_draws_the_same_epochs_and_a_saved_state_replays_one() -> None:
    a, b = UnpairedOrder(4, 4, seed=1), UnpairedOrder(4, 4, seed=1)
    a.start_epoch()
    b.start_epoch()
    assert a.picks == b.picks
    saved = a.state_dict()
    first = list(a.picks)
    a.start_epoch()
    second = list(a.picks)
    c = UnpairedOrder(4, 4, seed=99)
    c.load_state_dict(saved)
    c.start_epoch()
    assert c.picks == first
    c.start_epoch()
    assert c.picks == second
    many = [UnpairedOrder(6, 6, seed=s) for s in range(3)]
    for o in many:
        o.start_epoch()
    assert len({tuple(o.picks) for o in many}) == 3


def test_batches_read_the_drawn_images_mirrored_by_their_coins(folders: tuple[Path, Path]) -> None:
    x, y = folders
    data = UnpairedData(x, y, 64, batch_size=2, seed=0, mirror=True)
    data.order.start_epoch()
    assert data.steps_per_epoch == 1  # three X images, two Y images: an epoch of 3 draws, one full batch of 2
    bx, by = data.batch(0)
    assert bx.shape == by.shape == (2, 3, 64, 64)
    names_x = ["0.png", "1.png", "9.png"]
    for row, (ix, iy, fx, fy) in enumerate(data.order.picks[:2]):
        want_y = to_unit_range(read_image(y / f"{iy}.png"))
        assert torch.equal(by[row], want_y.flip(-1) if fy else want_y)
        if names_x[ix] != "9.png":  # the 72 x 64 image is resized
            want_x = to_unit_range(read_image(x / names_x[ix]))
            assert torch.equal(bx[row], want_x.flip(-1) if fx else want_x)
