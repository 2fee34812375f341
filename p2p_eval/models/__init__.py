"""Model factory: read-only registries from name to builder, and builders that take a TrainConfig.

``GENERATORS`` maps ``TrainConfig.arch`` ("unet", "encoder_decoder", "resnet"), ``DISCRIMINATOR_ARCHS`` maps
``TrainConfig.d_arch`` ("patchgan"; "global", the five-layer one-output CNN of the blog post "pix2pix Image
Translation") and ``DISCRIMINATORS`` maps the PatchGAN's ``TrainConfig.d_receptive_field`` (1, 16, 70, 286) to a
builder ``cfg -> nn.Module``. The builders return freshly initialised nets (N(0, 0.02), see :mod:`p2p_eval.models.init`), drawing from torch's global
RNG, so seed it first for reproducible weights.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import nn

from p2p_eval.config import TrainConfig
from p2p_eval.errors import unknown_name
from p2p_eval.models.global_discriminator import GlobalDiscriminator
from p2p_eval.models.init import init_weights
from p2p_eval.models.patchgan import nlayer_discriminator, pixel_discriminator, receptive_field
from p2p_eval.models.resnet import ResnetGenerator
from p2p_eval.models.unet import UnetGenerator

Builder = Callable[[TrainConfig], nn.Module]


def _unet(cfg: TrainConfig, skips: bool = True) -> nn.Module:
    return UnetGenerator(cfg.input_nc, cfg.output_nc, cfg.resolved_num_downs, cfg.ngf, cfg.norm, cfg.dropout,
                         cfg.bottleneck_norm, skips=skips)


def _encoder_decoder(cfg: TrainConfig) -> nn.Module:
    return _unet(cfg, skips=False)


def _resnet(cfg: TrainConfig) -> nn.Module:
    return ResnetGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, cfg.resnet_blocks,
                           dropout=cfg.dropout != "none")


def d_input_channels(cfg: TrainConfig) -> int:
    """cGAN: D sees input and output concatenated (or, ``d_input = "sum"``, their sum); unconditional GAN: the
    output alone."""
    return cfg.input_nc + cfg.output_nc if cfg.gan == "conditional" and cfg.d_input == "concat" else cfg.output_nc


def _patch(n_layers: int) -> Builder:
    def build(cfg: TrainConfig) -> nn.Module:
        return nlayer_discriminator(d_input_channels(cfg), cfg.ndf, n_layers, cfg.norm)

    return build


def _pixel(cfg: TrainConfig) -> nn.Module:
    return pixel_discriminator(d_input_channels(cfg), cfg.ndf, cfg.norm)


GENERATORS: MappingProxyType[str, Builder] = MappingProxyType(
    {"unet": _unet, "encoder_decoder": _encoder_decoder, "resnet": _resnet}
)
DISCRIMINATORS: MappingProxyType[int, Builder] = MappingProxyType(
    {1: _pixel, 16: _patch(1), 70: _patch(3), 286: _patch(5)}
)


def _patchgan(cfg: TrainConfig) -> nn.Module:
    if cfg.d_receptive_field not in DISCRIMINATORS:
        raise unknown_name("discriminator receptive field", str(cfg.d_receptive_field),
                           [str(k) for k in DISCRIMINATORS])
    return DISCRIMINATORS[cfg.d_receptive_field](cfg)


def _global(cfg: TrainConfig) -> nn.Module:
    return GlobalDiscriminator(d_input_channels(cfg), cfg.ndf, cfg.norm)


DISCRIMINATOR_ARCHS: MappingProxyType[str, Builder] = MappingProxyType({"patchgan": _patchgan, "global": _global})


def build_generator(cfg: TrainConfig) -> nn.Module:
    """The generator named by ``cfg.arch``, initialised N(0, 0.02)."""
    if cfg.arch not in GENERATORS:
        raise unknown_name("generator arch", cfg.arch, GENERATORS)
    return init_weights(GENERATORS[cfg.arch](cfg))


def build_discriminator(cfg: TrainConfig) -> nn.Module | None:
    """The discriminator of ``cfg.d_arch`` (the PatchGAN of ``cfg.d_receptive_field`` or the global one),
    conditional or not, initialised N(0, 0.02); None when ``cfg.gan == "none"``."""
    if cfg.gan == "none":
        return None
    if cfg.d_arch not in DISCRIMINATOR_ARCHS:
        raise unknown_name("discriminator arch", cfg.d_arch, DISCRIMINATOR_ARCHS)
    return init_weights(DISCRIMINATOR_ARCHS[cfg.d_arch](cfg))


__all__ = ["DISCRIMINATORS", "DISCRIMINATOR_ARCHS", "GENERATORS", "build_discriminator", "build_generator",
           "d_input_channels", "receptive_field"]
