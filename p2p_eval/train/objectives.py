"""pix2pix objectives (paper section 3.1-3.2, appendix 6.2) and the Modified-Pix2Pix reconstruction loss.

- cGAN: D sees the input and an output concatenated on channels, D(x, y), or (``d_input = "sum"``, the blog
  post "pix2pix Image Translation": "the input of D is the sum of X and Y") their sum D(x + y); unconditional
  GAN: D(y) alone.
- ``gan_mode`` "vanilla": binary cross-entropy on D's logits (``BCEWithLogits``, the paper's log D);
  "lsgan": least squares (LSGAN), as the public PyTorch code's ``GANLoss``. Labels: real 1, fake 0.
- D's objective is halved: L_D = 0.5 * (loss(D(x, y), real) + loss(D(x, G(x)), fake)).
- G uses the non-saturating loss, maximising log D(x, G(x)): loss(D(x, G(x)), real).
- L1: mean |y - G(x)| weighted by ``lambda_l1`` (100; 0 gives the pure (c)GAN rows of Table 1).
- L2 (the same blog post: "the Euclidean distance between Y and Y'"): per image the Euclidean norm
  ||y - G(x)||_2 over all its channels and pixels (not squared, not divided by the pixel count), averaged over
  the batch, weighted by ``lambda_l2`` (its network: 1, beside the classification loss, with lambda_l1 = 0).
- MSE: mean (y - G(x))^2 over all elements, weighted by ``lambda_mse``: the "L2 regression" baseline of the
  paper's colorization study (Table 5), here on the pix2pix generator.
- Reconstruction ("Modified Pix2Pix Conditional Adversarial Networks for Image-to-Image Translation",
  eq. 3): L_rec = mean |x - G(G(x))|, the same generator applied twice with fresh dropout noise, weighted by
  ``lambda_rec`` (10, with lambda_l1 = 1). It needs as many input as output channels, and only means
  something when the output domain can be read back as an input (that paper's day -> night); the config
  refuses it when the channel counts differ.

Each loss function returns ``(total, terms)``: ``terms`` maps a name to its (weighted) contribution, so
the total is the sum of the terms other than the total itself ("D" or "G").
All losses are computed in float32, also under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from p2p_eval.config import TrainConfig


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all elements (``nn.L1Loss``)."""
    return F.l1_loss(output.float(), target.float())


def l2_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each image's Euclidean distance ``sqrt(sum (output - target)^2)``; its gradient
    at a zero difference is 0 (``torch.linalg.vector_norm``'s subgradient)."""
    diff = (output.float() - target.float()).flatten(1)
    return torch.linalg.vector_norm(diff, dim=1).mean()


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """Mean loss of D's logits against the label ``real`` (1) or fake (0): BCE-with-logits or least squares."""
    logits = logits.float()
    label = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, label)
    if mode == "lsgan":
        return F.mse_loss(logits, label)
    raise ValueError(f"unknown gan_mode {mode!r}; valid: lsgan, vanilla")


def discriminator_input(cfg: TrainConfig, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """What D sees: concat(x, image) on channels (or ``x + image`` when ``cfg.d_input == "sum"``) for the cGAN,
    the image alone for the unconditional GAN."""
    if cfg.gan != "conditional":
        return image
    return x + image if cfg.d_input == "sum" else torch.cat([x, image], dim=1)


def discriminator_loss(cfg: TrainConfig, discriminator: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Halved D loss on a real pair (x, y) and a fake pair (x, fake); pass ``fake`` detached.

    Terms: "D_real", "D_fake" (each already halved) and the total "D".
    """
    real_term = 0.5 * gan_loss(discriminator(discriminator_input(cfg, x, y)), True, cfg.gan_mode)
    fake_term = 0.5 * gan_loss(discriminator(discriminator_input(cfg, x, fake)), False, cfg.gan_mode)
    total = real_term + fake_term
    return total, {"D_real": real_term, "D_fake": fake_term, "D": total}


def generator_loss(cfg: TrainConfig, generator: nn.Module, discriminator: nn.Module | None, x: torch.Tensor,
                   y: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's total loss: non-saturating GAN term + lambda_l1 * L1 + lambda_l2 * L2 + lambda_mse * MSE + lambda_rec *
    L_rec, for ``fake = G(x)``.

    Terms present: "G_GAN" (when ``cfg.gan`` is not "none"), "G_L1" (lambda_l1 > 0), "G_L2" (lambda_l2 > 0),
    "G_MSE" (lambda_mse > 0), "G_rec" (lambda_rec > 0; runs ``generator`` once more on ``fake``), each weighted, and the total "G".
    """
    terms: dict[str, torch.Tensor] = {}
    if cfg.gan != "none":
        if discriminator is None:
            raise ValueError(f"gan = {cfg.gan!r} needs a discriminator")
        terms["G_GAN"] = gan_loss(discriminator(discriminator_input(cfg, x, fake)), True, cfg.gan_mode)
    if cfg.lambda_l1 > 0:
        terms["G_L1"] = cfg.lambda_l1 * l1_loss(fake, y)
    if cfg.lambda_l2 > 0:
        terms["G_L2"] = cfg.lambda_l2 * l2_loss(fake, y)
    if cfg.lambda_mse > 0:
        terms["G_MSE"] = cfg.lambda_mse * F.mse_loss(fake.float(), y.float())
    if cfg.lambda_rec > 0:
        terms["G_rec"] = cfg.lambda_rec * l1_loss(generator(fake), x)
    total = torch.stack(list(terms.values())).sum()
    terms["G"] = total
    return total, terms
