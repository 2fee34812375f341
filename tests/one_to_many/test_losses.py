"""Each loss of the one-to-many framework against an independent computation on tiny tensors: the MMD of
equation (6) by explicit loops over pairs, the Gaussian KL of equations (8)-(11) by its closed form in numpy, the
GAN losses by their log / squared forms, and equations (3), (7) and (12) summed by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from p2p_eval.errors import UserError
from p2p_eval.one_to_many.config import OneToManyConfig
from p2p_eval.one_to_many.losses import (CycleOutput, cycle_total, discriminator_loss, gan_loss, gaussian_kl, mmd,
                                         reconstruction, run_cycle)
from p2p_eval.one_to_many.models import OneToMany


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_by_loops_over_pairs(unbiased: bool) -> None:
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    sigma = 0.7

    def k(a: list[float], b: list[float]) -> float:
        return math.exp(-sum((u - v) ** 2 for u, v in zip(a, b)) / (2 * sigma**2))

    def within(z: list[list[float]]) -> float:
        pairs = [(i, j) for i in range(len(z)) for j in range(len(z)) if i != j or not unbiased]
        return sum(k(z[i], z[j]) for i, j in pairs) / len(pairs)

    pl, ql = p.tolist(), q.tolist()
    pq = sum(k(a, b) for a in pl for b in ql) / (len(pl) * len(ql))
    want = within(pl) + within(ql) - 2 * pq
    assert float(mmd(p, q, sigma, unbiased=unbiased)) == pytest.approx(want, rel=1e-12)


def test_mmd_of_a_sample_with_itself_is_zero_and_grows_with_a_shift() -> None:
    p = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    assert float(mmd(p, p, 1.0, unbiased=False)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(p, p + 3.0, 1.0, unbiased=False)) > float(mmd(p, p + 0.5, 1.0, unbiased=False)) > 0


def test_the_biased_mmd_prefers_codes_at_the_prior_centre_and_the_unbiased_one_their_spread() -> None:
    """The V-statistic counts k(v, v) = 1 for each code: with one code it is lowest at the centre of the prior
    draws, and at batch 8 eight copies of the centre still beat eight prior-like codes. The U-statistic (the
    default) prefers the prior-like codes."""
    sigma = OneToManyConfig().sigma
    prior = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    typical = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    centre = torch.zeros(8, 8)
    assert float(mmd(centre[:1], prior, sigma, False)) < min(float(mmd(v[None], prior, sigma, False)) for v in typical)
    assert float(mmd(centre, prior, sigma, False)) < float(mmd(typical, prior, sigma, False))
    assert float(mmd(typical, prior, sigma)) < float(mmd(centre, prior, sigma))


def test_the_unbiased_mmd_needs_two_codes_per_step() -> None:
    with pytest.raises(UserError, match="at least two codes per step"):
        OneToManyConfig(batch_size=1)
    assert OneToManyConfig(batch_size=1, mmd_estimator="biased").batch_size == 1


def test_gaussian_kl_by_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    var = np.exp(logvar)
    per_item = [sum(0.5 * (var[i, j] + mean[i, j] ** 2 - 1 - math.log(var[i, j])) for j in range(4)) for i in range(3)]
    got = float(gaussian_kl(torch.from_numpy(mean), torch.from_numpy(logvar)))
    assert got == pytest.approx(np.mean(per_item), rel=1e-12)
    normal = torch.distributions.Normal
    ref = torch.distributions.kl_divergence(normal(torch.from_numpy(mean), torch.from_numpy(var**0.5)),
                                            normal(0.0, 1.0)).sum(1).mean()
    assert got == pytest.approx(float(ref), rel=1e-10)


def test_gan_losses_by_their_forms() -> None:
    logits = torch.tensor([[-2.0, 0.5], [1.5, 3.0]], dtype=torch.float64)
    sig = [1 / (1 + math.exp(-v)) for v in logits.flatten().tolist()]
    assert float(gan_loss(logits, True, "vanilla")) == pytest.approx(-np.mean(np.log(sig)), rel=1e-12)
    assert float(gan_loss(logits, False, "vanilla")) == pytest.approx(-np.mean(np.log(1 - np.array(sig))), rel=1e-12)
    vals = logits.flatten().tolist()
    assert float(gan_loss(logits, True, "lsgan")) == pytest.approx(np.mean([(v - 1) ** 2 for v in vals]), rel=1e-12)
    assert float(gan_loss(logits, False, "lsgan")) == pytest.approx(np.mean([v**2 for v in vals]), rel=1e-12)


def _terms() -> CycleOutput:
    t = torch.tensor
    return CycleOutput(gan=t(0.7), rec_image=t(0.2), rec_specific=t(0.9), rec_invariant=t(0.4), mmd=t(0.05),
                       info=t(1.5), generated=torch.zeros(1))


def test_equations_3_7_12_summed_by_hand() -> None:
    cfg = OneToManyConfig()  # lambda1 10, lambda2 = lambda3 = 1, all alphas 1, beta 1
    assert float(reconstruction(_terms(), cfg)) == pytest.approx(10 * 0.2 + 0.9 + 0.4)
    # alpha1 * L + alpha2 * L_r + alpha3 * L_GAN + alpha4 * (MMD + |x_hat - x|)
    assert float(cycle_total(_terms(), cfg)) == pytest.approx(1.5 + (2.0 + 0.9 + 0.4) + 0.7 + (0.05 + 0.2))
    odd = dataclasses.replace(cfg, lambda1=3.0, lambda2=0.5, lambda3=2.0, alpha1=0.1, alpha2=2.0, alpha3=4.0, beta=5.0)
    by_hand = 0.1 * 1.5 + 2.0 * (3 * 0.2 + 0.5 * 0.9 + 2 * 0.4) + 4.0 * 0.7 + (5.0 * 0.1) * (0.05 + 0.2)
    assert float(cycle_total(_terms(), odd)) == pytest.approx(by_hand)


def test_without_the_domain_specific_cycle_its_term_is_dropped() -> None:
    cfg = OneToManyConfig(ds_cycle=False)
    assert float(reconstruction(_terms(), cfg)) == pytest.approx(10 * 0.2 + 0.4)
    assert float(cycle_total(_terms(), cfg)) == pytest.approx(1.5 + (2.0 + 0.4) + 0.7 + (0.05 + 0.2))


def test_the_default_kernel_parameter_is_two_over_the_code_size() -> None:
    # 2 sigma^2 = dim^2 (InfoVAE's implementation): sigma = 8 / sqrt(2) for 8 dimensions
    assert OneToManyConfig(code_dim=8).sigma == pytest.approx(5.656854249, rel=1e-9)
    assert OneToManyConfig(code_dim=4, mmd_sigma=1.5).sigma == 1.5


def test_one_cycle_follows_the_document_step_by_step() -> None:
    """X -> Y -> X computed here from the networks, with the same random draws in the same order."""
    cfg = OneToManyConfig(ngf=4, ndf=4, size=64, mmd_prior_samples=5)
    model = OneToMany(cfg)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.manual_seed(7)
    out = run_cycle(model, "x", x, cfg)
    torch.manual_seed(7)
    c1 = model.x.invariant(x)
    mean, logvar = model.x.specific(x)
    v_x1 = mean + torch.exp(logvar / 2) * torch.randn(2, 8)
    v_y1 = torch.randn(2, 8)
    y_g = model.y.generator(c1, v_y1)
    c_hat, (mean_hat, logvar_hat) = model.y.invariant(y_g), model.y.specific(y_g)
    x_hat = model.x.generator(c_hat, v_x1)
    prior = torch.randn(5, 8)
    d = model.dy(y_g)
    torch.testing.assert_close(out.generated, y_g)
    torch.testing.assert_close(out.gan, torch.nn.functional.softplus(-d).mean())  # -log sigmoid(D(y_g))
    torch.testing.assert_close(out.rec_image, (x_hat - x).abs().mean())
    torch.testing.assert_close(out.rec_specific, ((mean_hat - v_y1) ** 2).sum(dim=1).mean())
    torch.testing.assert_close(out.rec_invariant, ((c_hat - c1) ** 2).mean())
    torch.testing.assert_close(out.mmd, mmd(v_x1, prior, 8 / 2**0.5))  # the default bandwidth, dim / sqrt(2)
    torch.testing.assert_close(out.info, 0.5 * (logvar_hat.exp() + mean_hat**2 - 1 - logvar_hat).sum(1).mean())


def test_the_discriminator_loss_is_halved() -> None:
    model = OneToMany(OneToManyConfig(ngf=4, ndf=4, size=64))
    real, fake = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    dr, df = model.dy(real), model.dy(fake)
    by_hand = 0.5 * (torch.nn.functional.softplus(-dr).mean() + torch.nn.functional.softplus(df).mean())
    torch.testing.assert_close(discriminator_loss(model, "y", real, fake, "vanilla"), by_hand)
