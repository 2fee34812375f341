"""Objectives on hand-made tensors against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from p2p_eval.config import TrainConfig
from p2p_eval.train.objectives import discriminator_loss, gan_loss, generator_loss, l1_loss, l2_loss

LN2 = math.log(2.0)


class ConstantD(nn.Module):
    """A 'discriminator' that records what it sees and answers fixed logits: ``real`` for the real pair
    (recognised by its last channel being y), ``fake`` otherwise; a one-parameter scale keeps a graph."""

    def __init__(self, y: torch.Tensor, real: float, fake: float) -> None:
        super().__init__()
        self.y, self.real, self.fake = y, real, fake
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        self.seen.append(inp)
        is_real = torch.equal(inp[:, -self.y.shape[1]:], self.y)
        value = self.real if is_real else self.fake
        return self.scale * torch.full((inp.shape[0], 1, 2, 2), value) + 0 * inp.sum()


class Halve(nn.Module):
    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * t


X = torch.tensor([[[[0.2, -0.4], [1.0, 0.0]]]]).repeat(1, 3, 1, 1)  # mean |x| = 0.4
Y = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]]).repeat(1, 3, 1, 1)
FAKE = torch.zeros(1, 3, 2, 2)  # |y - fake| mean = (1 + 1 + 0.5 + 0) / 4 = 0.625


def test_l1_mean() -> None:
    assert l1_loss(FAKE, Y).item() == pytest.approx(0.625)


def test_bce_with_logits_values() -> None:
    zero = torch.zeros(3, 1, 4, 4)
    assert gan_loss(zero, True).item() == pytest.approx(LN2)  # -log sigmoid(0) = ln 2
    assert gan_loss(zero, False).item() == pytest.approx(LN2)
    two = torch.full((1, 1, 2, 2), 2.0)
    assert gan_loss(two, True).item() == pytest.approx(math.log(1 + math.exp(-2)))  # 0.126928
    assert gan_loss(two, False).item() == pytest.approx(math.log(1 + math.exp(2)))  # 2.126928
    mixed = torch.tensor([0.0, 2.0, -2.0, 0.0]).view(1, 1, 2, 2)
    expected = (LN2 + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2)) + LN2) / 4
    assert gan_loss(mixed, True).item() == pytest.approx(expected)


def test_lsgan_values() -> None:
    logits = torch.tensor([0.0, 0.5, 1.0, 3.0]).view(1, 1, 2, 2)
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx((1 + 0.25 + 0 + 4) / 4)
    assert gan_loss(logits, False, "lsgan").item() == pytest.approx((0 + 0.25 + 1 + 9) / 4)


def test_discriminator_loss_is_halved() -> None:
    cfg = TrainConfig()
    d = ConstantD(Y, real=0.0, fake=0.0)
    total, terms = discriminator_loss(cfg, d, X, Y, FAKE)
    assert total.item() == pytest.approx(LN2)  # 0.5 * (ln 2 + ln 2)
    assert terms["D_real"].item() == pytest.approx(LN2 / 2) and terms["D"] is total
    d = ConstantD(Y, real=2.0, fake=-2.0)  # a confident, correct D
    total, terms = discriminator_loss(cfg, d, X, Y, FAKE)
    assert total.item() == pytest.approx(math.log(1 + math.exp(-2)))  # 0.5 * 2 * ln(1 + e^-2)
    lsgan = TrainConfig(gan_mode="lsgan")
    total, _ = discriminator_loss(lsgan, ConstantD(Y, real=0.5, fake=0.5), X, Y, FAKE)
    assert total.item() == pytest.approx(0.5 * (0.25 + 0.25))


def test_conditional_and_unconditional_inputs() -> None:
    d = ConstantD(Y, 0.0, 0.0)
    discriminator_loss(TrainConfig(gan="conditional"), d, X, Y, FAKE)
    assert [s.shape[1] for s in d.seen] == [6, 6]
    assert torch.equal(d.seen[0], torch.cat([X, Y], 1)) and torch.equal(d.seen[1], torch.cat([X, FAKE], 1))
    d = ConstantD(Y, 0.0, 0.0)
    discriminator_loss(TrainConfig(gan="unconditional", lambda_l1=0.0), d, X, Y, FAKE)
    assert torch.equal(d.seen[0], Y) and torch.equal(d.seen[1], FAKE)


def test_generator_l1_cgan_non_saturating() -> None:
    d = ConstantD(Y, real=0.0, fake=-2.0)
    total, terms = generator_loss(TrainConfig(), Halve(), d, X, Y, FAKE)
    # non-saturating: -log sigmoid(-2) = ln(1 + e^2), not log(1 - sigmoid(-2))
    assert terms["G_GAN"].item() == pytest.approx(math.log(1 + math.exp(2)))
    assert terms["G_L1"].item() == pytest.approx(62.5)  # 100 * 0.625
    assert total.item() == pytest.approx(math.log(1 + math.exp(2)) + 62.5)
    assert set(terms) == {"G_GAN", "G_L1", "G"}


def test_generator_rows_of_table_1() -> None:
    g = Halve()
    d = ConstantD(Y, real=0.0, fake=0.0)
    total, terms = generator_loss(TrainConfig(gan="none"), g, None, X, Y, FAKE)  # L1 alone
    assert set(terms) == {"G_L1", "G"} and total.item() == pytest.approx(62.5)
    total, terms = generator_loss(TrainConfig(lambda_l1=0.0), g, d, X, Y, FAKE)  # cGAN alone
    assert set(terms) == {"G_GAN", "G"} and total.item() == pytest.approx(LN2)
    d = ConstantD(Y, real=0.0, fake=0.0)
    generator_loss(TrainConfig(gan="unconditional", lambda_l1=0.0), g, d, X, Y, FAKE)  # GAN alone
    assert torch.equal(d.seen[0], FAKE)
    with pytest.raises(ValueError, match="discriminator"):
        generator_loss(TrainConfig(), g, None, X, Y, FAKE)


def test_reconstruction_loss_of_modified_pix2pix() -> None:
    cfg = TrainConfig(gan="none", lambda_l1=1.0, lambda_rec=10.0)
    g = Halve()
    fake = g(X)  # G(x) = x / 2, so G(G(x)) = x / 4 and |x - x/4| = 0.75 |x|, mean 0.75 * 0.4 = 0.3
    total, terms = generator_loss(cfg, g, None, X, Y, fake)
    assert terms["G_rec"].item() == pytest.approx(10 * 0.3)
    # |y - x/2|: row (1 - 0.1, -1 + 0.2, 0.5 - 0.5, 0 - 0) -> (0.9 + 0.8 + 0 + 0) / 4 = 0.425
    assert terms["G_L1"].item() == pytest.approx(0.425)
    assert total.item() == pytest.approx(3.425)


def test_gradients_flow_to_the_right_nets() -> None:
    d = ConstantD(Y, 0.0, 0.0)
    fake = FAKE.clone().requires_grad_(True)
    total, _ = discriminator_loss(TrainConfig(), d, X, Y, fake.detach())
    total.backward()
    assert d.scale.grad is not None and fake.grad is None
    total, _ = generator_loss(TrainConfig(), Halve(), d, X, Y, fake)
    total.backward()
    # d/dfake of 100 * mean|y - fake| at fake = 0 is -100 * sign(y) / 12 per element
    expected = -100 * torch.sign(Y) / Y.numel()
    assert torch.allclose(fake.grad, expected)


# The blog post "pix2pix Image Translation": D sees the sum of X and Y; G's loss is the Euclidean distance + classification.
def test_l2_is_the_euclidean_distance_per_image() -> None:
    # y - 0 per channel: 1, -1, 0.5, 0 -> squares 2.25 per channel, 6.75 over the 3 channels; distance sqrt(6.75)
    assert l2_loss(FAKE, Y).item() == pytest.approx(math.sqrt(6.75))
    two = torch.cat([Y, Y])  # the second image equal to its target: distance 0, mean over the batch sqrt(6.75) / 2
    assert l2_loss(torch.cat([FAKE, Y]), two).item() == pytest.approx(math.sqrt(6.75) / 2)
    same = Y.clone().requires_grad_(True)
    l2_loss(same, Y).backward()
    assert torch.equal(same.grad, torch.zeros_like(Y))  # no NaN at a zero difference
    fake = FAKE.clone().requires_grad_(True)
    l2_loss(fake, Y).backward()  # d/dfake ||fake - y|| = (fake - y) / ||fake - y||
    assert torch.allclose(fake.grad, -Y / math.sqrt(6.75))


def test_blog_generator_loss_and_summed_discriminator_input() -> None:
    cfg = TrainConfig(arch="resnet", d_arch="global", d_input="sum", lambda_l1=0.0, lambda_l2=1.0)
    d = ConstantD(Y, real=0.0, fake=-2.0)
    total, terms = generator_loss(cfg, Halve(), d, X, Y, FAKE)
    assert set(terms) == {"G_GAN", "G_L2", "G"}
    assert torch.equal(d.seen[0], X + FAKE) and d.seen[0].shape[1] == 3
    assert terms["G_L2"].item() == pytest.approx(math.sqrt(6.75))
    assert total.item() == pytest.approx(math.log(1 + math.exp(2)) + math.sqrt(6.75))
    d = ConstantD(Y, real=0.0, fake=0.0)
    total, _ = discriminator_loss(cfg, d, X, Y, FAKE)
    assert torch.equal(d.seen[0], X + Y) and torch.equal(d.seen[1], X + FAKE)
    assert total.item() == pytest.approx(LN2)  # halved BCE of logit 0 on both pairs
    weighted = generator_loss(TrainConfig(gan="none", lambda_l1=0.0, lambda_l2=3.0), Halve(), None, X, Y, FAKE)[1]
    assert weighted["G_L2"].item() == pytest.approx(3 * math.sqrt(6.75))
