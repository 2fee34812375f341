"""Translate a data set with a trained run: lossless 8-bit RGB PNGs named after the inputs.

Test-time protocol (paper section 3.3; :mod:`p2p_eval.train.inference`): by default the run's
``test_dropout`` setting, which is the paper's protocol — dropout on and batch-norm batch statistics
(the original Torch code simply ran the net in training mode).  We translate one image at a time, so
batch statistics are that image's own statistics; batch-norm running averages are left untouched.
``eval_mode=True`` uses the usual ``model.eval()`` instead.

Many outputs per input (``samples = K``): dropout is the only noise of pix2pix's generator (paper
section 3.2), so each of the K forward passes of an input draws its own dropout masks and gives its own
output, written as ``<input name>_sample<k>.png`` for k = 0 .. K-1 (the folder of samples that
``metrics --metric lpips-diversity`` reads, the diversity protocol of the one-to-many document,
"Unsupervised Image-to-Image Translation Using Domain-Specific Variational Information Bound").  With K = 1 the
file is ``<input name>.png``.  All masks come from torch's RNG seeded once with ``seed`` (default the
run's seed) and drawn in order (input by input, sample by sample), so a rerun with the same seed writes
the same files, and K = 1 with the default seed gives what a plain translation gives.

A colorization run (``color_space = "lab"``) writes RGB images recombined from the input's lightness L and the
predicted ab (:mod:`p2p_eval.data.lab`).

Images may be larger than the training size (the paper's 512x512 maps test) as long as the generator
can halve them ``num_downs`` times (U-Net / encoder-decoder) or twice (ResNet).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from p2p_eval.config import TrainConfig, load_generator
from p2p_eval.data.aligned import config_dataset
from p2p_eval.data.lab import rgb_of
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, require_dir, require_file
from p2p_eval.imageio import from_unit_range, write_png
from p2p_eval.models import build_generator
from p2p_eval.train.checkpoint import load_checkpoint
from p2p_eval.train.inference import generation_mode


@dataclass(frozen=True)
class TranslateOptions:
    """How :func:`translate_run` translates.

    ``eval_mode``: None follows the run's ``test_dropout`` (True there = paper protocol), False forces the
    paper protocol, True forces ``eval()``.  ``size``: side of the images fed to the net (default the
    training size); it must be a multiple of :func:`size_multiple`.  ``samples``: outputs per input.
    ``seed``: seeds the dropout masks (default the run's seed).  ``progress=False`` shows no bar."""

    split: str = "val"
    eval_mode: bool | None = None
    device: str = "auto"
    size: int | None = None
    samples: int = 1
    seed: int | None = None
    progress: bool = True


def size_multiple(cfg: TrainConfig) -> int:
    """Image sides the generator accepts are multiples of this (2**num_downs, or 4 for ResNet)."""
    return 4 if cfg.arch == "resnet" else 2**cfg.resolved_num_downs


def sample_stem(name: str, k: int, samples: int) -> str:
    """File stem of output ``k`` of input ``name``: the name itself when there is one output per input."""
    return name if samples == 1 else f"{name}_sample{k}"


def as_rgb(output: torch.Tensor, inp: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A generator output (C, H, W) as the RGB image it stands for: L recombined with the predicted ab for a
    colorization run, a 1-channel output repeated on three channels, else the output itself."""
    if cfg.color_space == "lab":
        return rgb_of(inp, output)
    return output.expand(3, -1, -1) if output.shape[0] == 1 else output


def load_run_generator(run_dir: str | Path, device: torch.device) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained generator of ``run_dir`` (from checkpoints/last.pt) and the run's config."""
    run = require_dir(run_dir, "run folder")
    cfg = load_generator(require_file(run / "config.toml", "run config (is this a p2p-eval train run?)"))
    path = run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    gen = build_generator(cfg)
    try:
        gen.load_state_dict(state["generator"])
    except (KeyError, TypeError, RuntimeError):
        raise UserError(f"{path} holds no generator for {run / 'config.toml'}: not a checkpoint of this p2p-eval "
                        "train run (a segmenter or another run's file?); give the folder that p2p-eval train "
                        "wrote") from None
    return gen.to(device), cfg


def _check_noise(gen: nn.Module, cfg: TrainConfig, use_eval: bool, samples: int, run_dir: str | Path) -> None:
    """K > 1 outputs per input need dropout at test time, else all K would be the same image."""
    if samples == 1:
        return
    if use_eval:
        why = ("--eval-mode turns dropout off" if cfg.test_dropout
               else f"{run_dir} was trained with test_dropout = false (eval() at test time)")
        raise UserError(f"--samples {samples} needs test-time dropout, the generator's only noise, but {why}; "
                        "translate with the paper's protocol or use --samples 1")
    if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in gen.modules()):
        raise UserError(f"--samples {samples}: the generator of {run_dir} has no dropout (dropout = "
                        f"{cfg.dropout!r}), its only noise, so every sample would be the same; use --samples 1")


def translate_run(run_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                  options: TranslateOptions | None = None, **fields: Any) -> list[Path]:
    """Translate ``data_dir/split`` with the run's generator; write ``out_dir/<input stem>.png``, or
    ``<input stem>_sample<k>.png`` for ``samples`` > 1; return the written paths in order.

    ``fields`` set fields of ``options`` by name (:class:`TranslateOptions`)."""
    opts = dataclasses.replace(options or TranslateOptions(), **fields)
    if opts.samples < 1:
        raise UserError(f"--samples must be >= 1, got {opts.samples}")
    dev = resolve_device(opts.device)
    gen, cfg = load_run_generator(run_dir, dev)
    side = cfg.size if opts.size is None else opts.size
    multiple = size_multiple(cfg)
    if side < multiple or side % multiple:
        raise UserError(f"--size {side} does not fit the generator of {run_dir} ({cfg.arch}, num_downs "
                        f"{cfg.resolved_num_downs}): use a multiple of {multiple}, e.g. {max(1, round(side / multiple)) * multiple}")
    dataset = config_dataset(data_dir, opts.split, cfg, size=side)
    use_eval = (not cfg.test_dropout) if opts.eval_mode is None else opts.eval_mode
    _check_noise(gen, cfg, use_eval, opts.samples, run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(cfg.seed if opts.seed is None else opts.seed)
        with generation_mode(gen, eval_mode=use_eval):
            for i in tqdm(range(len(dataset)), desc=f"translate {opts.split}", unit="img",
                          disable=None if opts.progress else True):
                item = dataset[i]
                x = item["input"].unsqueeze(0).to(dev)
                for k in range(opts.samples):
                    fake = as_rgb(gen(x).float()[0].cpu(), item["input"], cfg)
                    stem = sample_stem(item["name"], k, opts.samples)
                    written.append(write_png(out / f"{stem}.png", from_unit_range(fake)))
    return written
