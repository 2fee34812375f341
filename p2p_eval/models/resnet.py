"""ResNet-k generator (k = 6 or 9 residual blocks), the common alternative to the U-Net.

Layout as the blog post "pix2pix Image Translation" describes it (a three-layer convolutional encoder, 9
residual blocks, a three-layer deconvolutional decoder, m x n x 3 in and out) and as the public PyTorch code's
``ResnetGenerator`` (Johnson et al. style) builds it: encoder c7s1-64, d128, d256; R256 x k; decoder u128, u64
(3x3 transposed convs, stride 2) and c7s1-out with Tanh; reflection padding. Any side that is a multiple of 4
works. Convs carry no bias under batch norm except the last one; with ``dropout`` other than ``none`` each
residual block has Dropout(0.5) between its two convs (the public code's pix2pix default, and the noise that
``translate --samples`` draws from).
"""

from __future__ import annotations

import torch
from torch import nn

from p2p_eval.models.init import conv_bias, norm_layer


class ResnetBlock(nn.Module):
    """x + [pad1, conv3x3, norm, ReLU, (dropout), pad1, conv3x3, norm](x)."""

    def __init__(self, dim: int, norm: str, dropout: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
                                   nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x ``blocks``, u(2 ngf), u(ngf), c7s1-output_nc, Tanh."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
                 blocks: int = 9, dropout: bool = True) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(inplace=True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * mult * 2), nn.ReLU(inplace=True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       norm_layer(norm, ngf * mult // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
