"""PatchGAN discriminators by receptive field (paper appendix 6.1.2, section 4.4 / Table 3).

70x70: C64-C128-C256-C512, then a conv to 1 channel; 16x16: C64-C128; 286x286: C64-C128-C256-C512-C512-C512
(the public PyTorch code's ``NLayerDiscriminator`` with n_layers 3 / 1 / 5: 4x4 convs, the last two with
stride 1); 1x1: the PixelGAN, C64-C128 of 1x1 convs (``PixelDiscriminator``). No norm on the first C64,
LeakyReLU 0.2. Conv biases only on the first and last conv under batch norm (the PixelGAN's last has none,
as in the public code). The output is a map of logits, one per patch.
"""

from __future__ import annotations

from torch import nn

from p2p_eval.models.init import conv_bias, norm_layer


def nlayer_discriminator(in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Sequential:
    """The public code's NLayerDiscriminator: receptive field 16 / 70 / 286 for n_layers 1 / 3 / 5."""
    bias = conv_bias(norm)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                   norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
    return nn.Sequential(*layers)


def pixel_discriminator(in_channels: int, ndf: int = 64, norm: str = "batch") -> nn.Sequential:
    """The 1x1 PixelGAN: C64-C128 of 1x1 convs, then a 1x1 conv to one logit per pixel."""
    bias = conv_bias(norm)
    return nn.Sequential(
        nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(norm, ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, 1, 1, bias=bias),
    )


def receptive_field(module: nn.Module) -> int:
    """Receptive field (pixels) of a chain of convs, walking them in order: r += (k - 1) * dilation * jump.

    ``jump`` is the product of the strides so far. Valid for sequential conv stacks such as the
    discriminators above (padding does not change the receptive field).
    """
    field, jump = 1, 1
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            field += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return field

