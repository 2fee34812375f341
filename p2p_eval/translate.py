"""Translate a data set with a trained run: one lossless 8-bit RGB PNG per input, named after the input.

Test-time protocol (paper section 3.3; :mod:`p2p_eval.train.inference`): by default the run's
``test_dropout`` setting, which is the paper's protocol — dropout on and batch-norm batch statistics
(the original Torch code simply ran the net in training mode).  We translate one image at a time, so
batch statistics are that image's own statistics; batch-norm running averages are left untouched.
``eval_mode=True`` uses the usual ``model.eval()`` instead.  The dropout masks come from a generator
seeded with the run's seed, so a translation is reproducible.

Images may be larger than the training size (the paper's 512x512 maps test) as long as the generator
can halve them ``num_downs`` times (U-Net / encoder-decoder) or twice (ResNet).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from p2p_eval.config import TrainConfig, load_generator
from p2p_eval.data.aligned import AlignedDataset
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, require_dir, require_file
from p2p_eval.imageio import from_unit_range, write_png
from p2p_eval.models import build_generator
from p2p_eval.train.checkpoint import load_checkpoint
from p2p_eval.train.inference import generation_mode


def size_multiple(cfg: TrainConfig) -> int:
    """Image sides the generator accepts are multiples of this (2**num_downs, or 4 for ResNet)."""
    return 4 if cfg.arch == "resnet" else 2**cfg.resolved_num_downs


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


def translate_run(run_dir: str | Path, data_dir: str | Path, out_dir: str | Path, split: str = "val",
                  eval_mode: bool | None = None, device: str = "auto", size: int | None = None,
                  progress: bool = True) -> list[Path]:
    """Translate ``data_dir/split`` with the run's generator; write ``out_dir/<input stem>.png``.

    ``eval_mode``: None follows the run's ``test_dropout`` (True there = paper protocol), False forces
    the paper protocol, True forces ``eval()``.  ``size``: side of the images fed to the net (default
    the training size); it must be a multiple of :func:`size_multiple`.
    """
    dev = resolve_device(device)
    gen, cfg = load_run_generator(run_dir, dev)
    side = cfg.size if size is None else size
    multiple = size_multiple(cfg)
    if side < multiple or side % multiple:
        raise UserError(f"--size {side} does not fit the generator of {run_dir} ({cfg.arch}, num_downs "
                        f"{cfg.resolved_num_downs}): use a multiple of {multiple}, e.g. {max(1, round(side / multiple)) * multiple}")
    dataset = AlignedDataset(data_dir, split, direction=cfg.direction, size=side, jitter=False)
    use_eval = (not cfg.test_dropout) if eval_mode is None else eval_mode
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        with generation_mode(gen, eval_mode=use_eval):
            for i in tqdm(range(len(dataset)), desc=f"translate {split}", unit="img", disable=None if progress else True):
                item = dataset[i]
                fake = gen(item["input"].unsqueeze(0).to(dev)).float()[0].cpu()
                if fake.shape[0] == 1:
                    fake = fake.expand(3, -1, -1)
                written.append(write_png(out / f"{item['name']}.png", from_unit_range(fake)))
    return written
