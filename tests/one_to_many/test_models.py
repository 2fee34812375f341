"""Shapes and parameter counts of every network of the one-to-many framework, counted by hand from the layer
plan of the document's section 5 on CycleGAN's layers (c7s1-k, dk, Rk, uk) and the 70x70 PatchGAN.

Every conv here carries a bias (instance norm has no parameters of its own), so a k x k conv from a to b
channels holds a*b*k*k + b parameters and a linear layer from a to b holds a*b + b.
"""

from __future__ import annotations

import pytest
import torch

from p2p_eval.one_to_many.config import OneToManyConfig
from p2p_eval.one_to_many.models import Generator, OneToMany, parameter_count


def conv(a: int, b: int, k: int) -> int:
    return a * b * k * k + b


def hand_counts(n: int, m: int, code: int, k: int) -> dict[str, int]:
    """ngf n, ndf m, code size ``code``, specific-encoder kernel k."""
    shared = conv(3, n, 7) + conv(n, 2 * n, 3)                       # c7s1-n, d(2n)
    invariant = shared + conv(2 * n, 4 * n, 3) + 3 * 2 * conv(4 * n, 4 * n, 3)   # d(4n), R(4n) x 3
    specific_own = conv(2 * n, 4 * n, k) + 4 * conv(4 * n, 4 * n, k) + 2 * (4 * n * code + code)
    d = 4 * n + code
    generator = 3 * 2 * conv(d, d, 3) + conv(d, 2 * n, 3) + conv(2 * n, n, 3) + conv(n, 3, 7)
    patchgan = conv(3, m, 4) + conv(m, 2 * m, 4) + conv(2 * m, 4 * m, 4) + conv(4 * m, 8 * m, 4) + conv(8 * m, 1, 4)
    return {"invariant": invariant, "specific": shared + specific_own, "specific_own": specific_own,
            "generator": generator, "discriminator": patchgan,
            "all": 2 * (invariant + specific_own + generator) + 2 * patchgan}


@pytest.mark.parametrize(("ngf", "ndf", "code", "kernel"), [(64, 64, 8, 4), (8, 8, 8, 4), (8, 4, 5, 3)])
def test_parameter_counts_match_the_hand_count(ngf: int, ndf: int, code: int, kernel: int) -> None:
    model = OneToMany(OneToManyConfig(ngf=ngf, ndf=ndf, code_dim=code, specific_kernel=kernel))
    want = hand_counts(ngf, ndf, code, kernel)
    for domain in (model.x, model.y):
        assert parameter_count(domain.invariant) == want["invariant"]
        assert parameter_count(domain.specific) == want["specific"]
        assert parameter_count(domain.generator) == want["generator"]
    assert parameter_count(model.dx) == parameter_count(model.dy) == want["discriminator"]
    assert parameter_count(model) == want["all"]
    assert len(model.generative_parameters()) + len(model.discriminator_parameters()) == len(list(model.parameters()))


def test_the_document_sized_networks_by_number() -> None:
    """ngf = ndf = 64, code 8: the 70x70 PatchGAN on 3 channels is pix2pix's 6-channel one (2,768,705 with batch
    norm) less 3*64*16 input weights, with a bias instead of batch norm's two parameters on its three middle layers."""
    want = hand_counts(64, 64, 8, 4)
    assert want["discriminator"] == 2_768_705 - 3 * 64 * 16 - (128 + 256 + 512)
    assert want["invariant"] == 9_408 + 64 + 73_728 + 128 + 294_912 + 256 + 6 * (589_824 + 256)


def test_the_specific_encoder_shares_the_first_two_layers_of_its_domain() -> None:
    model = OneToMany(OneToManyConfig(ngf=8, ndf=8))
    for domain in (model.x, model.y):
        assert domain.specific.stem is domain.invariant.stem and domain.specific.down1 is domain.invariant.down1
    assert model.x.invariant.stem is not model.y.invariant.stem


@pytest.mark.parametrize("size", [64, 256])
def test_shapes(size: int) -> None:
    cfg = OneToManyConfig(ngf=4, ndf=4, code_dim=8, size=size)
    model = OneToMany(cfg)
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        c = model.x.invariant(x)
        mean, logvar = model.x.specific(x)
        y = model.y.generator(c, torch.randn(2, 8))
        logits = model.dy(y)
    assert c.shape == (2, 16, size // 4, size // 4)
    assert mean.shape == logvar.shape == (2, 8)
    assert y.shape == x.shape and y.abs().max() <= 1
    side = {64: 6, 256: 30}[size]  # the "30x30 PatchGAN": 30x30 logits on 256x256 images
    assert logits.shape == (2, 1, side, side)


def test_the_code_reaches_every_position_of_the_output() -> None:
    """The code is tiled over c's whole map: changing it changes the output everywhere."""
    model = OneToMany(OneToManyConfig(ngf=4, ndf=4, size=64))
    c = model.x.invariant(torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        a, b = model.y.generator(c, torch.zeros(1, 8)), model.y.generator(c, torch.ones(1, 8) * 3)
    assert bool(((a - b).abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("ngf", [8, 64])
def test_the_specific_encoder_keeps_the_signal_at_initialisation(ngf: int) -> None:
    """After the five stride-2 convolutions the features keep at least 1/50 of the shared layers' scale (without
    norms the N(0, 0.02) weights shrink it about tenfold per layer and the code starts as a constant)."""
    torch.manual_seed(0)
    specific = OneToMany(OneToManyConfig(ngf=ngf, ndf=4)).x.specific
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        shared = specific.down1(specific.stem(x))
        pooled = specific.convs(shared).mean(dim=(2, 3))
    assert float(pooled.abs().mean()) > float(shared.abs().mean()) / 50


def test_the_tiled_code_survives_the_generators_norm() -> None:
    """Instance norm subtracts each channel's spatial mean, which erases a code tiled over space: the first
    residual branch's output is then the same for any code. The default layer norm keeps it."""
    torch.manual_seed(0)
    c = torch.randn(1, 4 * 8, 16, 16)
    codes = torch.randn(2, 1, 8)

    def branch(norm: str) -> list[torch.Tensor]:
        torch.manual_seed(1)
        block = Generator(8, 8, norm).model[0].block
        return [block(torch.cat([c, v[:, :, None, None].expand(-1, -1, 16, 16)], dim=1)) for v in codes]

    with torch.no_grad():
        same = branch("instance")
        kept = branch(OneToManyConfig().generator_norm)
    assert (same[0] - same[1]).abs().max() < 1e-4
    assert (kept[0] - kept[1]).abs().mean() > 1e-2


@pytest.mark.parametrize(("act", "alive"), [("relu", False), ("leaky", True)])
def test_the_code_survives_a_last_layer_pushed_below_zero(act: str, alive: bool) -> None:
    """A trained run's specific encoders died with ReLU: the last conv's outputs were below zero for every image,
    so the pooled features, and the code, were the same for all. With the default LeakyReLU two images still get
    different codes when every pre-activation of the last layer is negative."""
    torch.manual_seed(0)
    specific = OneToMany(OneToManyConfig(ngf=4, ndf=4, specific_activation=act)).x.specific
    last_conv = [m for m in specific.convs if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(-100.0)
        mean, _ = specific(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert bool((mean[0] != mean[1]).any()) is alive
