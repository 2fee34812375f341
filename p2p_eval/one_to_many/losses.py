"""The losses of the one-to-many framework (the document's equations 1-12) and one training step.

One cycle, X -> Y -> X (the Y -> X -> Y cycle is the same with the domains swapped, same networks):

- forward: c1 = Exc(x); (mu, logvar) = Exd(x), v_x1 = mu + exp(logvar / 2) * eps (reparameterised);
  v_y1 ~ N(0, I); y_g = Gy(c1, v_y1);
- backward: c_hat1 = Eyc(y_g); (mu_hat, logvar_hat) = Eyd(y_g), v_hat_y1 = mu_hat; x_hat = Gx(c_hat1, v_x1).

Terms of the cycle (means over pixels, channels and batch, except the two over the code: summed over its
dimensions, averaged over the batch):

- L_GAN (eq. 1): the generator's side, ``gan_mode`` vanilla: BCE-with-logits of Dy(y_g) against "real" (the
  non-saturating form of the log loss); lsgan: squared distance to 1.  The discriminators' loss is the halved
  sum over real and generated images (:func:`discriminator_loss`).
- L_r (eq. 3): lambda1 * mean |x_hat - x| + lambda2 * ||v_hat_y1 - v_y1||^2 + lambda3 * mean (c_hat1 - c1)^2;
  the image term is an absolute distance because the document models p(x | v) as Laplacian; ``ds_cycle``
  false drops the lambda2 term (the document's Table 2 "w/o domain-specific code cycle-consistency").
- L_VAE (eq. 7): MMD[p(v) || q(v)] between the batch's v_x1 and ``mmd_prior_samples`` draws of N(0, I)
  (``mmd_estimator``: unbiased by default), plus
  the Laplacian negative log-likelihood mean |x_hat - x|.
- L^1 (eqs. 8-11): KL[N(mu_hat, exp(logvar_hat)) || N(0, I)], summed over the code, averaged over the batch.

Total (eq. 12): sum over both cycles of alpha1 L^i + alpha2 L_r^i + alpha3 L_GAN^i + alpha4 L_VAE^i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from p2p_eval.one_to_many.config import OneToManyConfig
from p2p_eval.one_to_many.models import OneToMany


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """Mean loss of ``logits`` judged ``real`` (or fake): BCE-with-logits (``vanilla``) or squared error (``lsgan``)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """k(a_i, b_j) = exp(-||a_i - b_j||^2 / (2 sigma^2)) for every pair: an (len(a), len(b)) matrix."""
    sq = (a[:, None, :] - b[None, :, :]).pow(2).sum(dim=2)
    return torch.exp(-sq / (2.0 * sigma**2))


def mmd(p: torch.Tensor, q: torch.Tensor, sigma: float, unbiased: bool = True) -> torch.Tensor:
    """Equation (6): E k(p, p') + E k(q, q') - 2 E k(p, q), each expectation a mean over pairs of the samples.
    ``unbiased``: the two within-sample means leave out each sample's pair with itself (the U-statistic; needs
    two samples of each); otherwise they include it (the V-statistic, biased upwards by about 1/n for n samples,
    which rewards codes that sit together at the prior's centre when n is small)."""
    return _within(p, sigma, unbiased) + _within(q, sigma, unbiased) - 2.0 * gaussian_kernel(p, q, sigma).mean()


def _within(z: torch.Tensor, sigma: float, unbiased: bool) -> torch.Tensor:
    """The mean of k(z_i, z_j) over ordered pairs, without i = j when ``unbiased``."""
    k = gaussian_kernel(z, z, sigma)
    if not unbiased:
        return k.mean()
    n = z.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[N(mean, diag(exp(logvar))) || N(0, I)] = 1/2 sum(exp(logvar) + mean^2 - 1 - logvar), batch-averaged."""
    return 0.5 * (logvar.exp() + mean.pow(2) - 1.0 - logvar).sum(dim=1).mean()


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A draw of N(mean, exp(logvar)) that gradients flow through: mean + exp(logvar / 2) * eps."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


@dataclass
class CycleOutput:
    """The loss terms of one cycle (unweighted) and the image it generated (for the discriminator step)."""

    gan: torch.Tensor
    rec_image: torch.Tensor
    rec_specific: torch.Tensor
    rec_invariant: torch.Tensor
    mmd: torch.Tensor
    info: torch.Tensor
    generated: torch.Tensor


def run_cycle(model: OneToMany, source: str, image: torch.Tensor, cfg: OneToManyConfig) -> CycleOutput:
    """The cycle that starts from ``image`` of domain ``source`` (``x``: X -> Y -> X, ``y``: Y -> X -> Y)."""
    target = "y" if source == "x" else "x"
    src, dst = model.domain(source), model.domain(target)
    c1 = src.invariant(image)
    mean, logvar = src.specific(image)
    v_src = reparameterise(mean, logvar)
    v_dst = torch.randn(image.shape[0], cfg.code_dim, device=image.device)
    generated = dst.generator(c1, v_dst)
    c_hat = dst.invariant(generated)
    mean_hat, logvar_hat = dst.specific(generated)
    rebuilt = src.generator(c_hat, v_src)
    prior = torch.randn(cfg.mmd_prior_samples, cfg.code_dim, device=image.device)
    return CycleOutput(
        gan=gan_loss(model.discriminator(target)(generated), True, cfg.gan_mode),
        rec_image=(rebuilt - image).abs().mean(),
        rec_specific=(mean_hat - v_dst).pow(2).sum(dim=1).mean(),
        rec_invariant=(c_hat - c1).pow(2).mean(),
        mmd=mmd(v_src, prior, cfg.sigma, cfg.mmd_estimator == "unbiased"),
        info=gaussian_kl(mean_hat, logvar_hat),
        generated=generated,
    )


def reconstruction(out: CycleOutput, cfg: OneToManyConfig) -> torch.Tensor:
    """L_r of equation (3); without ``ds_cycle`` the domain-specific code's term is left out."""
    specific = cfg.lambda2 * out.rec_specific if cfg.ds_cycle else 0.0
    return cfg.lambda1 * out.rec_image + specific + cfg.lambda3 * out.rec_invariant


def cycle_total(out: CycleOutput, cfg: OneToManyConfig) -> torch.Tensor:
    """One cycle's share of equation (12): alpha1 L^i + alpha2 L_r^i + alpha3 L_GAN^i + alpha4 L_VAE^i."""
    vae = out.mmd + out.rec_image
    return cfg.alpha1 * out.info + cfg.alpha2 * reconstruction(out, cfg) + cfg.alpha3 * out.gan + cfg.alpha4 * vae


def discriminator_loss(model: OneToMany, domain: str, real: torch.Tensor, fake: torch.Tensor,
                       mode: str) -> torch.Tensor:
    """Half the sum of the discriminator's losses on a real and a generated (detached) image of ``domain``."""
    disc = model.discriminator(domain)
    return 0.5 * (gan_loss(disc(real), True, mode) + gan_loss(disc(fake.detach()), False, mode))


def train_step(model: OneToMany, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, cfg: OneToManyConfig) -> dict[str, float]:
    """One iteration: both cycles and an Adam step on the encoders and generators (eq. 12; the discriminators
    are not stepped by it), then an Adam step on Dx and Dy with the cycles' generated images.  Returns the terms."""
    cycles = {"x": run_cycle(model, "x", x, cfg), "y": run_cycle(model, "y", y, cfg)}
    total = cycle_total(cycles["x"], cfg) + cycle_total(cycles["y"], cfg)
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    d_loss = (discriminator_loss(model, "y", y, cycles["x"].generated, cfg.gan_mode)
              + discriminator_loss(model, "x", x, cycles["y"].generated, cfg.gan_mode))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    values = {"total": total.item(), "d": d_loss.item()}
    for name, out in cycles.items():
        for term in ("gan", "rec_image", "rec_specific", "rec_invariant", "mmd", "info"):
            values[f"{name}_{term}"] = getattr(out, term).item()
    return values
