"""U-Net and encoder-decoder generators of pix2pix (paper appendix 6.1.1, errata 6.3), any depth.

Encoder: C64-C128-C256-C512-C512-... (``num_downs`` 4x4 stride-2 convs, no norm on the first C64,
LeakyReLU 0.2). Decoder: 4x4 stride-2 transposed convs with ReLU, back to ``output_nc`` channels and Tanh.
The U-Net concatenates encoder layer i with decoder layer n-i; the encoder-decoder is the same net with
those skips severed, so its decoder convs see only the previous decoder layer's channels.

Layer layout and parameter counts follow the public PyTorch code (``UnetGenerator`` /
``UnetSkipConnectionBlock``): no BN on the bottleneck by default (the public fix; ``bottleneck_norm``
restores the paper's original), no conv bias under batch norm except the last layer. Dropout 0.5:
``paper`` on the first three decoder layers (CD512-CD1024-CD1024, the Torch original), ``public`` one
layer further out (decoder layers 2-4, which is what the public code does at depth 8), ``none``.
Decoder layer j counts from the bottleneck (j = 0); the outermost layer never has dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from p2p_eval.models.init import conv_bias, norm_layer

#: Decoder layers (0 = next to the bottleneck) that carry dropout for each ``dropout`` setting.
DROPOUT_LAYERS = {"paper": (0, 1, 2), "public": (1, 2, 3), "none": ()}


def encoder_channels(num_downs: int, ngf: int) -> list[int]:
    """Output channels of encoder layer i: ngf * min(2**i, 8) (C64-C128-C256-C512-C512-...)."""
    return [ngf * min(2**i, 8) for i in range(num_downs)]


class UnetGenerator(nn.Module):
    """pix2pix U-Net (``skips=True``) or encoder-decoder (``skips=False``) with ``num_downs`` levels."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: str = "paper",
        bottleneck_norm: bool = False,
        skips: bool = True,
    ) -> None:
        super().__init__()
        if num_downs < 1:
            raise ValueError("num_downs must be >= 1")
        self.skips = skips
        self.num_downs = num_downs
        bias = conv_bias(norm)
        ch = encoder_channels(num_downs, ngf)
        innermost = num_downs - 1

        downs: list[nn.Module] = []
        for i in range(num_downs):
            c_in = input_nc if i == 0 else ch[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            norm_here = i > 0 and (i < innermost or bottleneck_norm)
            layers.append(nn.Conv2d(c_in, ch[i], 4, stride=2, padding=1, bias=bias))
            if norm_here:
                layers.append(norm_layer(norm, ch[i], one_value_safe=i == innermost))
            downs.append(nn.Sequential(*layers))
        self.down = nn.ModuleList(downs)

        drop = DROPOUT_LAYERS[dropout]
        ups: list[nn.Module] = []
        for j in range(num_downs):
            i = innermost - j  # the encoder layer this decoder layer mirrors
            c_in = ch[i] * (2 if skips and j > 0 else 1)
            if i == 0:
                ups.append(nn.Sequential(nn.ReLU(inplace=True), nn.ConvTranspose2d(c_in, output_nc, 4, 2, 1), nn.Tanh()))
                continue
            layers = [nn.ReLU(inplace=True), nn.ConvTranspose2d(c_in, ch[i - 1], 4, 2, 1, bias=bias),
                      norm_layer(norm, ch[i - 1])]
            if j in drop:
                layers.append(nn.Dropout(0.5))
            ups.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(ups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        h = x
        for down in self.down:
            h = down(h)
            feats.append(h)
        for j, up in enumerate(self.up):
            if j > 0 and self.skips:
                h = torch.cat([feats[self.num_downs - 1 - j], h], dim=1)
            h = up(h)
        return h
