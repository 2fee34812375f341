"""Generators and discriminators: parameter counts of the public PyTorch code,
the paper's layer lists, receptive fields, bias / norm / dropout / init rules."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from p2p_eval.config import ARCHS, RECEPTIVE_FIELDS, TrainConfig
from p2p_eval.models import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator, receptive_field

BASE = TrainConfig()


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_meta(fn, **kw):
    with torch.device("meta"):
        return fn(dataclasses.replace(BASE, **kw))


def convs(module: nn.Module, kind: type = nn.Conv2d) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is kind]


# Counts measured on the public PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix), batch norm.
def test_unet256_parameter_count() -> None:
    assert count(on_meta(build_generator)) == 54_413_955


def test_resnet9_parameter_count() -> None:
    assert count(on_meta(build_generator, arch="resnet")) == 11_383_427


@pytest.mark.parametrize(("field", "params"), [(1, 9_024), (16, 139_585), (70, 2_768_705), (286, 11_159_361)])
def test_discriminator_parameter_counts(field: int, params: int) -> None:
    assert count(on_meta(build_discriminator, d_receptive_field=field)) == params  # 3 + 3 channels


def test_encoder_decoder_parameter_count_by_hand() -> None:
    # Encoder (4x4 convs, no bias under batch norm; BN = 2 params per channel, none on e1 and e8):
    #   convs 3*64*16 + 64*128*16 + 128*256*16 + 256*512*16 + 4 * 512*512*16 = 19,532,800
    #   BN    2 * (128 + 256 + 512 + 512 + 512 + 512)                           =      4,864
    # Decoder without skips (input = previous decoder layer only):
    #   convs 512*512*16 (d1) + 3 * 512*512*16 (d2-d4) + 512*256*16 + 256*128*16 + 128*64*16
    #         + 64*3*16 + 3 (last conv's bias)                                  = 19,532,803
    #   BN    2 * (4 * 512 + 256 + 128 + 64)                                    =      4,992
    # Total 19,532,800 + 4,864 + 19,532,803 + 4,992 = 39,075,459
    assert count(on_meta(build_generator, arch="encoder_decoder")) == 39_075_459


def test_decoder_layer_lists_match_the_paper() -> None:
    unet = on_meta(build_generator)
    encdec = on_meta(build_generator, arch="encoder_decoder")
    # Paper appendix 6.1.1: U-Net decoder CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 (channels after
    # concatenation), encoder-decoder decoder CD512-CD512-CD512-C512-C256-C128-C64, then a conv to 3.
    assert [c.in_channels for c in convs(unet, nn.ConvTranspose2d)] == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
    assert [c.out_channels for c in convs(encdec, nn.ConvTranspose2d)] == [512, 512, 512, 512, 256, 128, 64, 3]
    # Encoder C64-C128-C256-C512-C512-C512-C512-C512, 4x4 stride 2.
    enc = convs(unet)
    assert [c.out_channels for c in enc] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in enc + convs(unet, nn.ConvTranspose2d))


def test_dropout_placement() -> None:
    def dropped(**kw) -> list[int]:
        g = on_meta(build_generator, **kw)
        return [j for j, up in enumerate(g.up) if any(isinstance(m, nn.Dropout) for m in up)]

    assert dropped() == [0, 1, 2]  # CD512-CD1024-CD1024, the Torch original
    assert dropped(dropout="public") == [1, 2, 3]  # one layer out, as the public PyTorch code
    assert dropped(dropout="none") == []
    assert all(m.p == 0.5 for m in on_meta(build_generator).modules() if isinstance(m, nn.Dropout))


def test_bias_rules_under_batch_norm() -> None:
    g = on_meta(build_generator)
    g_convs = convs(g) + convs(g, nn.ConvTranspose2d)
    assert [c for c in g_convs if c.bias is not None] == [convs(g, nn.ConvTranspose2d)[-1]]
    assert convs(g)[0].bias is None and not isinstance(g.down[0][-1], nn.BatchNorm2d)  # first C64: no norm
    for field in (16, 70, 286):
        d = convs(on_meta(build_discriminator, d_receptive_field=field))
        assert [c.bias is not None for c in d] == [True] + [False] * (len(d) - 2) + [True]
    assert [c.bias is not None for c in convs(on_meta(build_discriminator, d_receptive_field=1))] == [
        True, False, False]
    r = on_meta(build_generator, arch="resnet")
    assert [c.bias is not None for c in convs(r) + convs(r, nn.ConvTranspose2d)].count(True) == 1
    inst = on_meta(build_generator, norm="instance")
    assert all(c.bias is not None for c in convs(inst) + convs(inst, nn.ConvTranspose2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in on_meta(build_generator, norm="none").modules())


def test_bottleneck_norm_option() -> None:
    public = on_meta(build_generator)
    paper = on_meta(build_generator, bottleneck_norm=True)
    assert count(paper) - count(public) == 2 * 512  # one BN on the innermost 512 channels
    assert not any(isinstance(m, nn.BatchNorm2d) for m in public.down[-1])


def test_bottleneck_norm_zeroes_the_bottleneck_at_batch_one() -> None:
    torch.manual_seed(0)
    g = build_generator(TrainConfig(size=64, bottleneck_norm=True))
    seen = {}

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["b"] = output.detach().clone()

    g.down[-1].register_forward_hook(keep)
    out = g(torch.rand(1, 3, 64, 64) * 2 - 1)
    out.mean().backward()
    assert seen["b"].shape == (1, 512, 1, 1)
    assert torch.equal(seen["b"], torch.zeros_like(seen["b"]))  # beta = 0 at init: the paper's zeroed bottleneck
    assert all(p.grad is not None for p in g.parameters())
    g.eval()
    assert g(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_init_statistics() -> None:
    torch.manual_seed(0)
    g = build_generator(TrainConfig(size=64))
    weights = torch.cat([c.weight.flatten() for c in convs(g) + convs(g, nn.ConvTranspose2d)])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    gammas = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(gammas.mean().item() - 1.0) < 3e-3 and abs(gammas.std().item() - 0.02) < 3e-3
    biases = [m.bias for m in g.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("in_nc", "out_nc"), [(3, 3), (1, 3), (3, 1), (2, 2)])
def test_forward_backward_64(arch: str, in_nc: int, out_nc: int) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(arch=arch, size=64, input_nc=in_nc, output_nc=out_nc, ngf=8, ndf=8)
    g, d = build_generator(cfg), build_discriminator(cfg)
    x = torch.rand(2, in_nc, 64, 64) * 2 - 1
    y = g(x)
    assert y.shape == (2, out_nc, 64, 64) and y.abs().max() <= 1  # Tanh output
    logits = d(torch.cat([x, y], 1))
    assert logits.shape == (2, 1, 6, 6)  # 70x70 PatchGAN: 64 -> 32 -> 16 -> 8 -> 7 -> 6
    logits.mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_unconditional_and_no_gan() -> None:
    d = on_meta(build_discriminator, gan="unconditional", output_nc=1)
    assert convs(d)[0].in_channels == 1
    assert convs(on_meta(build_discriminator))[0].in_channels == 6
    assert build_discriminator(dataclasses.replace(BASE, gan="none")) is None


def test_encoder_decoder_has_no_skips() -> None:
    # Without skips the output depends on the input only through the 1x1 bottleneck: in eval mode with
    # zero-initialised decoder the same bottleneck gives the same output; with skips a change leaks past it.
    torch.manual_seed(0)
    cfg = TrainConfig(size=64, dropout="none", norm="none")
    for arch, leaks in (("encoder_decoder", False), ("unet", True)):
        g = build_generator(dataclasses.replace(cfg, arch=arch))
        with torch.no_grad():
            g.down[-1][-1].weight.zero_()  # bottleneck is now a constant (bias only)
            x = torch.rand(1, 3, 64, 64)
            diff = (g(x) - g(x.flip(-1))).abs().max().item()
        assert (diff > 0) == leaks


def test_registries_are_read_only_and_complete() -> None:
    assert set(GENERATORS) == set(ARCHS) and set(DISCRIMINATORS) == set(RECEPTIVE_FIELDS)
    with pytest.raises(TypeError):
        GENERATORS["x"] = build_generator  # type: ignore[index]


@pytest.mark.parametrize("field", RECEPTIVE_FIELDS)
def test_receptive_field_from_layers(field: int) -> None:
    assert receptive_field(on_meta(build_discriminator, d_receptive_field=field)) == field


@pytest.mark.parametrize(("field", "size"), [(1, 9), (16, 40), (70, 110)])
def test_receptive_field_matches_gradient_support(field: int, size: int) -> None:
    # Independent check: the input pixels that influence one central output logit span field x field.
    torch.manual_seed(0)
    d = build_discriminator(TrainConfig(d_receptive_field=field, ndf=4)).eval()
    x = torch.randn(1, 6, size, size, requires_grad=True)
    out = d(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    support = x.grad.abs().sum((0, 1)) > 0
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    assert rows.max() - rows.min() + 1 == field and cols.max() - cols.min() + 1 == field


# The network of the blog post "pix2pix Image Translation": ResNet-9 G, five-layer CNN D with one output.
def test_blog_generator_parameter_count_by_hand() -> None:
    # Encoder: c7s1-64 7*7*3*64 + BN 2*64 = 9,536; d128 3*3*64*128 + 2*128 = 73,984; d256 3*3*128*256 + 2*256 = 295,424
    # 9 residual blocks of two 3x3 256->256 convs with BN: 9 * 2 * (589,824 + 512) = 10,626,048
    # Decoder: u128 3*3*256*128 + 2*128 = 295,168; u64 3*3*128*64 + 2*64 = 73,856; c7s1-3 7*7*64*3 + 3 (bias) = 9,411
    # 9,536 + 73,984 + 295,424 + 10,626,048 + 295,168 + 73,856 + 9,411 = 11,383,427
    g = on_meta(build_generator, arch="resnet", d_arch="global", d_input="sum")
    assert count(g) == 11_383_427
    kinds = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    encoder, decoder = kinds[:3], kinds[-3:]  # three layers each side of the 9 blocks (18 convs)
    assert len(kinds) == 3 + 9 * 2 + 3 and [c.out_channels for c in encoder] == [64, 128, 256]
    assert [type(c) for c in decoder] == [nn.ConvTranspose2d, nn.ConvTranspose2d, nn.Conv2d]
    assert [c.out_channels for c in decoder] == [128, 64, 3]


@pytest.mark.parametrize(("d_input", "in_channels", "params"), [("sum", 3, 2_757_953), ("concat", 6, 2_761_025)])
def test_global_discriminator_parameter_count_by_hand(d_input: str, in_channels: int, params: int) -> None:
    # C64: 4*4*c*64 + 64 (bias, no norm); C128: 4*4*64*128 + BN 2*128 = 131,328; C256: 4*4*128*256 + 2*256 = 524,800;
    # C512: 4*4*256*512 + 2*512 = 2,098,176; linear 512 -> 1: 512 + 1 = 513.
    # sum (c = 3): 3,136 + 131,328 + 524,800 + 2,098,176 + 513 = 2,757,953; concat (c = 6): + 3,072 = 2,761,025
    d = on_meta(build_discriminator, d_arch="global", d_input=d_input)
    assert count(d) == params
    layers = convs(d) + [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 5 and convs(d)[0].in_channels == in_channels
    assert [c.bias is not None for c in convs(d)] == [True, False, False, False]


def test_global_discriminator_gives_one_logit_per_image_at_any_size() -> None:
    torch.manual_seed(0)
    for side in (32, 64, 96):
        cfg = TrainConfig(arch="resnet", d_arch="global", d_input="sum", size=side, ngf=8, ndf=8)
        d = build_discriminator(cfg)
        out = d(torch.rand(2, 3, side, side + 16))
        assert out.shape == (2, 1)
        out.sum().backward()
        assert all(p.grad is not None for p in d.parameters())
    # with batch norm at batch 1 the last map needs two values per channel: side 32 -> 2x2 works
    build_discriminator(TrainConfig(d_arch="global", size=32, ndf=8))(torch.rand(1, 6, 32, 32))


def test_global_discriminator_is_a_mean_then_linear() -> None:
    # Independent: the logit is w . mean over positions of the last conv block's map + b.
    torch.manual_seed(0)
    d = build_discriminator(TrainConfig(d_arch="global", norm="none", ndf=4, size=64)).eval()
    x = torch.rand(1, 6, 64, 64)
    feats = d.features(x)
    assert feats.shape == (1, 32, 4, 4)  # 64 / 2**4, ndf * 8 channels
    expected = (feats.mean((2, 3)) * d.classify.weight).sum() + d.classify.bias
    assert d(x).item() == pytest.approx(expected.item(), rel=1e-6)
