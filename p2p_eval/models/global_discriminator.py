"""The discriminator of the blog post "pix2pix Image Translation" (Xuehao Liu, 2019): "a five-layer CNN" whose
output "is 1, which provides the probability of whether the input is a real pair".

Layers: C64-C128-C256-C512 (4x4 convs, stride 2, padding 1, LeakyReLU 0.2, no norm on the first, as in the
pix2pix discriminators), then the fifth layer, a linear map of the channel means of the last map to one logit
(global average pooling, so any image side >= 32 works; see :func:`p2p_eval.config.min_side`). The output is
(N, 1) logits; the probability is their sigmoid, and the classification loss is binary cross-entropy on them
(:func:`p2p_eval.train.objectives.gan_loss`). Conv biases only on the first conv under batch norm; the linear
layer has its bias. What the network sees (x + y, the blog's, or x and y stacked on channels) is decided by the
config's ``d_input`` (:func:`p2p_eval.train.objectives.discriminator_input`).
"""

from __future__ import annotations

import torch
from torch import nn

from p2p_eval.models.init import conv_bias, norm_layer


class GlobalDiscriminator(nn.Module):
    """Four strided convs and a linear layer: one logit per image."""

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for prev, mult in ((1, 2), (2, 4), (4, 8)):
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(ndf * 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x).mean((2, 3)))
