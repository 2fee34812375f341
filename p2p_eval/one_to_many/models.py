"""The networks of the one-to-many framework (the document's section 5, on CycleGAN's architecture).

CycleGAN's notation (Zhu, Park et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", appendix): c7s1-k = reflection pad 3, 7x7 conv to k channels, norm, ReLU; dk = 3x3 conv stride 2
(pad 1), norm, ReLU; Rk = residual block of two 3x3 convs; uk = 3x3 transposed conv stride 2, norm, ReLU.

- Domain-invariant encoder (Exc / Eyc): c7s1-ngf, d(2ngf), d(4ngf), R(4ngf) x 3: the code c has 4ngf channels
  at a quarter of the image side.
- Domain-specific encoder (Exd / Eyd): the *same modules* as its domain's c7s1-ngf and d(2ngf) (shared
  weights), then five stride-2 convolutions (``specific_kernel`` 4x4 or 3x3, pad 1), each with norm and
  ``specific_activation`` (LeakyReLU 0.2 or ReLU) except the last (activation only: its map is 1x1 at 64 px),
  with 2ngf -> 4ngf, then 4ngf channels, global average pooling and two linear heads: the mean and the
  log-variance of a ``code_dim`` code.  Without the norms the N(0, 0.02) weights shrink the signal about tenfold
  per layer and the code stays constant; with ReLU the last layer's units can all die, and then so does the code.
- Generator (Gx / Gy): c with the code tiled to c's size and concatenated (4ngf + code_dim channels),
  R(4ngf + code_dim) x 3, u(2ngf), u(ngf), c7s1-3 with Tanh instead of norm and ReLU.
- Discriminator (Dx / Dy): the 70x70 PatchGAN (:func:`p2p_eval.models.patchgan.nlayer_discriminator`, 3
  layers), whose logit map is 30x30 on 256x256 images: the document's "30x30 PatchGAN".

Weights are drawn N(0, 0.02) with zero biases (:func:`p2p_eval.models.init.init_weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from p2p_eval.models.init import conv_bias, init_weights, norm_layer
from p2p_eval.models.patchgan import nlayer_discriminator
from p2p_eval.models.resnet import ResnetBlock
from p2p_eval.one_to_many.config import OneToManyConfig


def activation(kind: str) -> nn.Module:
    """``leaky``: LeakyReLU(0.2); ``relu``: ReLU."""
    return nn.LeakyReLU(0.2, inplace=True) if kind == "leaky" else nn.ReLU(inplace=True)


def _down(cin: int, cout: int, norm: str) -> nn.Sequential:
    """dk: 3x3 conv, stride 2, pad 1, norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=conv_bias(norm)), norm_layer(norm, cout),
                         nn.ReLU(inplace=True))


class InvariantEncoder(nn.Module):
    """Exc / Eyc: image (3, S, S) -> domain-invariant code c (4ngf, S/4, S/4)."""

    def __init__(self, ngf: int, norm: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=conv_bias(norm)),
                                  norm_layer(norm, ngf), nn.ReLU(inplace=True))
        self.down1 = _down(ngf, 2 * ngf, norm)
        self.rest = nn.Sequential(_down(2 * ngf, 4 * ngf, norm), *[ResnetBlock(4 * ngf, norm, False) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.down1(self.stem(x)))


class SpecificEncoder(nn.Module):
    """Exd / Eyd: image -> (mean, log-variance) of the domain-specific code, each (batch, code_dim).

    ``stem`` and ``down1`` are the invariant encoder's own modules (shared weights, trained by both paths).
    """

    def __init__(self, invariant: InvariantEncoder, ngf: int, code_dim: int, kernel: int, norm: str,
                 act: str) -> None:
        super().__init__()
        self.stem, self.down1 = invariant.stem, invariant.down1
        chans = [2 * ngf, 4 * ngf, 4 * ngf, 4 * ngf, 4 * ngf, 4 * ngf]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            last = i == len(chans) - 2  # its map is 1x1 at 64 px, where a per-image norm would output zeros
            layers += [nn.Conv2d(cin, cout, kernel, stride=2, padding=1), norm_layer("none" if last else norm, cout),
                       activation(act)]
        self.convs = nn.Sequential(*layers)
        self.mean = nn.Linear(4 * ngf, code_dim)
        self.logvar = nn.Linear(4 * ngf, code_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.convs(self.down1(self.stem(x))).mean(dim=(2, 3))
        return self.mean(pooled), self.logvar(pooled)


class Generator(nn.Module):
    """Gx / Gy: (c, code) -> image; the code is tiled over c's spatial size and concatenated to it."""

    def __init__(self, ngf: int, code_dim: int, norm: str) -> None:
        super().__init__()
        dim, bias = 4 * ngf + code_dim, conv_bias(norm)
        layers: list[nn.Module] = [ResnetBlock(dim, norm, False) for _ in range(3)]
        for cin, cout in ((dim, 2 * ngf), (2 * ngf, ngf)):
            layers += [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm_layer(norm, cout), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, c: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        tiled = code[:, :, None, None].expand(-1, -1, c.shape[2], c.shape[3])
        return self.model(torch.cat([c, tiled], dim=1))


class Domain(nn.Module):
    """The three generative networks of one domain: its invariant and specific encoders and its generator."""

    def __init__(self, cfg: OneToManyConfig) -> None:
        super().__init__()
        self.invariant = InvariantEncoder(cfg.ngf, cfg.norm)
        self.specific = SpecificEncoder(self.invariant, cfg.ngf, cfg.code_dim, cfg.specific_kernel, cfg.norm,
                                        cfg.specific_activation)
        self.generator = Generator(cfg.ngf, cfg.code_dim, cfg.generator_norm)


class OneToMany(nn.Module):
    """Both domains' networks (``x``, ``y``) and their discriminators (``dx``, ``dy``), initialised N(0, 0.02).

    ``generative_parameters()`` (encoders and generators, each shared tensor once) and
    ``discriminator_parameters()`` are what the two Adam optimisers update.
    """

    def __init__(self, cfg: OneToManyConfig) -> None:
        super().__init__()
        self.x, self.y = Domain(cfg), Domain(cfg)
        self.dx = nlayer_discriminator(3, cfg.ndf, cfg.d_layers, cfg.norm)
        self.dy = nlayer_discriminator(3, cfg.ndf, cfg.d_layers, cfg.norm)
        init_weights(self)

    def domain(self, name: str) -> Domain:
        """``x`` or ``y``."""
        return self.x if name == "x" else self.y

    def discriminator(self, name: str) -> nn.Module:
        """The discriminator of domain ``name`` (``x`` or ``y``)."""
        return self.dx if name == "x" else self.dy

    def translate(self, images: torch.Tensor, source: str, codes: torch.Tensor) -> torch.Tensor:
        """Images of domain ``source`` in the other domain, one domain-specific code (a row of ``codes``) each:
        G_other(E_source_c(images), codes)."""
        other = self.y if source == "x" else self.x
        return other.generator(self.domain(source).invariant(images), codes)

    def generative_parameters(self) -> list[nn.Parameter]:
        """Parameters of both domains' encoders and generators (shared ones once)."""
        return list(nn.ModuleList([self.x, self.y]).parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of Dx and Dy."""
        return list(nn.ModuleList([self.dx, self.dy]).parameters())


def parameter_count(module: nn.Module) -> int:
    """Number of distinct parameters of ``module`` (a tensor shared by two sub-modules counts once)."""
    return sum(p.numel() for p in module.parameters())
