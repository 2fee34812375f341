"""Sampling a trained one-to-many run: K outputs per input from prior codes, or one per reference image.

``samples``: the codes are K draws of N(0, I) from a generator seeded with ``seed`` (the run's seed when not
given), the same K codes for every input, so code k gives every input the same "style" (as the document's
figures show) and the same seed writes the same files.  Output k of input NAME is ``NAME_sample<k>.png``
(:func:`p2p_eval.translate.sample_stem`, the naming ``p2p-eval metrics --metric lpips-diversity`` reads), or
``NAME.png`` when K is 1.

``reference``: each image REF of the reference folder (a target-domain image) gives its code, the mean of the
target domain's specific encoder (section 6.1 of the document: "the reference image is fed to the output
domain-specific encoder"), and every input is written once per reference as ``NAME_ref_<REF>.png``.

Inputs and references are resized to ``size`` x ``size`` (the run's size when not given); outputs are that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, require_dir
from p2p_eval.imageio import from_unit_range, list_images, to_unit_range, write_png
from p2p_eval.one_to_many.config import OneToManyConfig
from p2p_eval.one_to_many.data import load_resized
from p2p_eval.one_to_many.models import OneToMany
from p2p_eval.one_to_many.trainer import load_checkpoint, load_weights
from p2p_eval.translate import sample_stem


@dataclass(frozen=True)
class SampleOptions:
    """How to sample: ``to`` (``y``: X -> Y, ``x``: Y -> X), K prior ``samples`` or a ``reference`` folder,
    ``seed`` of the prior codes, image ``size``, ``device`` and ``progress`` bar."""

    to: str = "y"
    samples: int = 1
    reference: Path | None = None
    seed: int | None = None
    size: int | None = None
    device: str = "auto"
    progress: bool = True


def load_run(run_dir: str | Path, device: torch.device) -> tuple[OneToMany, OneToManyConfig]:
    """The networks and config of a run folder's last checkpoint."""
    require_dir(run_dir, "--run folder")
    path = Path(run_dir) / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    cfg = OneToManyConfig.from_dict(state["config"], source=f"{run_dir} checkpoint")
    model = OneToMany(cfg)
    load_weights(model, state, path)
    return model.to(device).eval(), cfg


def prior_codes(count: int, code_dim: int, seed: int) -> torch.Tensor:
    """``count`` draws of N(0, I) in ``code_dim`` dimensions from a generator seeded with ``seed``."""
    return torch.randn(count, code_dim, generator=torch.Generator().manual_seed(seed))


def reference_codes(model: OneToMany, folder: Path, domain: str, size: int,
                    device: torch.device) -> list[tuple[str, torch.Tensor]]:
    """(name, code) of each image of ``folder``: the mean of ``domain``'s specific encoder."""
    paths = list_images(folder, "--reference folder")
    if not paths:
        raise UserError(f"--reference folder {folder} holds no images; give a folder of {domain.upper()} images")
    codes = []
    with torch.no_grad():
        for path in paths:
            image = to_unit_range(load_resized(path, size)).unsqueeze(0).to(device)
            codes.append((path.stem, model.domain(domain).specific(image)[0][0].cpu()))
    return codes


def translate_folder(run_dir: str | Path, images: str | Path, out_dir: str | Path,
                     options: SampleOptions = SampleOptions()) -> list[Path]:
    """Translate every image of ``images`` with the run in ``run_dir`` into ``out_dir``; return the files written."""
    if options.to not in ("x", "y"):
        raise UserError(f"--to must be x or y, got {options.to!r}")
    if options.reference is not None and options.samples > 1:
        raise UserError("give --samples K (codes from the prior) or --reference DIR (codes of reference images), "
                        "not both")
    dev = resolve_device(options.device)
    model, cfg = load_run(run_dir, dev)
    size = options.size or cfg.size
    if size < 4 or size % 4:
        raise UserError(f"--size {size}: the generator needs a multiple of 4")
    source = "x" if options.to == "y" else "y"
    paths = list_images(images, "--images folder")
    if not paths:
        raise UserError(f"--images folder {images} holds no images; give a folder of {source.upper()} images")
    if options.reference is not None:
        refs = reference_codes(model, options.reference, options.to, size, dev)
        named = [(f"ref_{name}", code) for name, code in refs]
    else:
        seed = cfg.seed if options.seed is None else options.seed
        codes = prior_codes(options.samples, cfg.code_dim, seed)
        named = [(str(k), codes[k]) for k in range(options.samples)]
    code_batch = torch.stack([code for _, code in named]).to(dev)
    written = []
    with torch.no_grad():
        for path in tqdm(paths, desc=f"translate to {options.to}", unit="image",
                         disable=None if options.progress else True):
            image = to_unit_range(load_resized(path, size)).unsqueeze(0).to(dev)
            outs = model.translate(image.expand(len(named), -1, -1, -1), source, code_batch)
            for (label, _), out in zip(named, outs):
                stem = (f"{path.stem}_{label}" if options.reference is not None
                        else sample_stem(path.stem, int(label), options.samples))
                written.append(write_png(Path(out_dir) / f"{stem}.png", from_unit_range(out.cpu())))
    return written
