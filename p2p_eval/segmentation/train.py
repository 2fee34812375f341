"""Training the FCN-score segmenter on a CPU in hours, not days: random crops of in-memory frames.

Recipe (the shipped segmenter's; see its model card):

- Every training frame is decoded once at the scoring size S (256) and held in memory as uint8
  (:func:`p2p_eval.segmentation.data.preload`, cached on disk).
- Each sample is a random window of the S x S frame, its side ``crop / s`` with a scale ``s ~ U(scale)``,
  resized to ``crop`` x ``crop`` (photo bilinear, labels nearest), mirrored with probability 1/2, with
  photometric jitter (brightness, contrast, saturation).  With probability ``rare_crop`` the window is
  centred on a pixel of a class drawn with the class weights among the classes present in the frame, so
  thin and rare classes (pole, sign, light, rider, motorcycle...) are seen far more often.  The network is
  fully convolutional; it segments whole S x S images at test time.
- Class-balanced cross-entropy: weight ``(median_freq / freq_c) ** balance`` (median-frequency balancing,
  Eigen & Fergus 2015, softened by the exponent), void (255) ignored.
- AdamW, linear warm-up for one epoch then cosine decay; bf16 autocast and channels_last.
- Exact resume: all randomness of epoch ``e`` comes from a generator seeded with ``(seed, e)``, and
  ``OUT.partial`` is written atomically after every epoch with the model, optimiser and scheduler, so a
  killed run continued with ``resume=True`` reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from p2p_eval.errors import UserError
from p2p_eval.segmentation.data import data_layout, preload, split_pairs
from p2p_eval.segmentation.model import (DEFAULT_ARCH, DEFAULT_ENCODER, FORMAT, IGNORE, IMAGENET_MEAN, IMAGENET_STD,
                                         PARTIAL_FORMAT, build_segmenter, file_sha256, load_segmenter, normalize)


def default_cache_dir() -> Path:
    """Where decoded training frames are cached: ``$XDG_CACHE_HOME/p2p-eval`` (``~/.cache/p2p-eval``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "p2p-eval"


def class_weights(labels: torch.Tensor, num_classes: int, balance: float) -> torch.Tensor:
    """Median-frequency class weights ``(median_f / f_c) ** balance``; classes never seen get the largest."""
    counts = torch.bincount(labels[labels != IGNORE].flatten().long(), minlength=num_classes)[:num_classes].double()
    freq = counts / counts.sum().clamp(min=1)
    seen = freq > 0
    if not bool(seen.any()):
        return torch.ones(num_classes)
    median = freq[seen].median()
    weights = torch.where(seen, (median / freq.clamp(min=1e-12)) ** balance, torch.zeros_like(freq))
    weights[~seen] = weights[seen].max()
    return weights.float()


def sample_batch(photos: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, crop: int,
                 scale: tuple[float, float], rare_crop: float, weights: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented crops (uint8 (B, 3, crop, crop), int64 (B, crop, crop)) of the frames ``indices``."""
    size = photos.shape[-1]
    out_x, out_y = [], []
    for i in indices.tolist():
        label = labels[i]
        s = float(torch.empty(()).uniform_(scale[0], scale[1], generator=gen))
        win = max(8, min(size, round(crop / s)))
        if float(torch.rand((), generator=gen)) < rare_crop:
            present = torch.bincount(label[label != IGNORE].long(), minlength=len(weights))[: len(weights)] > 0
            probs = weights * present
            if float(probs.sum()) > 0:
                cls = int(torch.multinomial(probs, 1, generator=gen))
                ys, xs = torch.nonzero(label == cls, as_tuple=True)
                k = int(torch.randint(len(ys), (), generator=gen))
                cy, cx = int(ys[k]), int(xs[k])
                top = min(max(cy - win // 2, 0), size - win)
                left = min(max(cx - win // 2, 0), size - win)
            else:
                top = int(torch.randint(size - win + 1, (), generator=gen))
                left = int(torch.randint(size - win + 1, (), generator=gen))
        else:
            top = int(torch.randint(size - win + 1, (), generator=gen))
            left = int(torch.randint(size - win + 1, (), generator=gen))
        x = photos[i, :, top:top + win, left:left + win]
        y = label[top:top + win, left:left + win]
        if win != crop:
            x = F.interpolate(x[None].float(), size=(crop, crop), mode="bilinear", antialias=win > crop,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
            y = F.interpolate(y[None, None].float(), size=(crop, crop), mode="nearest-exact")[0, 0].to(torch.uint8)
        if float(torch.rand((), generator=gen)) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        out_x.append(x)
        out_y.append(y)
    return torch.stack(out_x), torch.stack(out_y).long()


def jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.25) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors ``U(1 - strength, 1 + strength)`` on floats in [0, 1]."""
    b = x.shape[0]
    factors = torch.empty(3, b, 1, 1, 1).uniform_(1 - strength, 1 + strength, generator=gen)
    x = x * factors[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors[1] + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factors[2] + gray
    return x.clamp(0, 1)


def train_segmenter(data_dir: str | Path, out_path: str | Path, epochs: int = 30, size: int = 256,
                    device: str = "auto", arch: str = DEFAULT_ARCH, encoder: str = DEFAULT_ENCODER,
                    encoder_weights: str | Path | None = None, batch_size: int = 16, lr: float = 2e-3,
                    crop: int | None = 160, scale: tuple[float, float] = (0.75, 1.5), rare_crop: float = 0.5,
                    balance: float = 0.5, amp: bool = True, resume: bool = False, limit: int | None = None,
                    seed: int = 0, eval_every: int = 5, cache_dir: str | Path | None = "default",
                    max_epochs_this_run: int | None = None, num_workers: int | None = None,
                    progress: bool = True) -> Path:
    """Train a segmenter on DATA's train split (real photos -> train ids), score it on DATA's val photos,
    and write the one-file checkpoint ``out_path``; returns ``out_path``.

    ``crop=None`` trains on whole ``size`` x ``size`` frames.  ``num_workers`` decode the frames once.  ``OUT.partial`` is written after every
    epoch; ``resume=True`` continues it (same settings required).  ``max_epochs_this_run`` stops after that
    many epochs, leaving ``OUT.partial`` for a later ``--resume`` (a long run split over sessions).
    ``OUT.log.jsonl`` gets one line per epoch (loss, seconds, and every ``eval_every`` epochs the val
    scores of the first 100 val frames).
    """
    from tqdm.auto import tqdm

    from p2p_eval.data.cityscapes import TRAIN_CLASSES
    from p2p_eval.device import resolve_device
    from p2p_eval.fsutil import atomic_torch_save

    data_dir, out_path = Path(data_dir), Path(out_path)
    crop = size if crop is None else crop
    if epochs < 1 or size < 32 or size % 32 or crop < 32 or crop % 32 or crop > size:
        raise UserError(f"need epochs >= 1, a size that is a multiple of 32 and a crop that is a multiple of 32 "
                        f"no larger than the size (got epochs={epochs}, size={size}, crop={crop})")
    if not 0 < scale[0] <= scale[1]:
        raise UserError(f"the scale range must be 0 < low <= high, got {scale}")
    dev = resolve_device(device)
    pairs = split_pairs(data_dir, "train")
    pairs = pairs[:limit] if limit else pairs
    partial = out_path.with_name(out_path.name + ".partial")
    log_path = out_path.with_name(out_path.name + ".log.jsonl")
    settings = {"arch": arch, "encoder": encoder, "input_size": size, "epochs": epochs, "batch_size": batch_size,
                "lr": lr, "seed": seed, "train_images": len(pairs), "crop": crop, "scale": list(scale),
                "rare_crop": rare_crop, "balance": balance, "amp": amp}
    if resume and not partial.is_file() and out_path.is_file():
        _, meta = load_segmenter(out_path, "cpu")
        print(f"{out_path} is already trained ({meta['epochs']} epochs); nothing to resume")
        return out_path
    cache = default_cache_dir() if cache_dir == "default" else cache_dir
    photos, labels = preload(pairs, size, cache, progress=progress, num_workers=num_workers)
    weights = class_weights(labels, len(TRAIN_CLASSES), balance)
    torch.manual_seed(seed)
    model = build_segmenter(arch, encoder, len(TRAIN_CLASSES), encoder_weights).to(dev)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = len(pairs) // batch_size if len(pairs) >= batch_size else 1
    total = epochs * steps_per_epoch
    warm = min(steps_per_epoch, total // 10 + 1)

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    start_epoch, seconds = 0, 0.0
    if resume and partial.is_file():
        state = _read_partial(partial)
        if state["settings"] != settings:
            raise UserError(f"{partial} was started with other settings ({state['settings']}); "
                            "rerun with those settings or without --resume")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
    norm_meta = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    loss_weights = weights.to(dev)
    stop = epochs if max_epochs_this_run is None else min(epochs, start_epoch + max_epochs_this_run)
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="segmenter", unit="step", disable=not progress)
    for epoch in range(start_epoch, stop):
        tic = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(pairs), generator=gen)
        model.train()
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x, y = sample_batch(photos, labels, idx, crop, scale, rare_crop, weights, gen)
            x = jitter(x.float() / 255.0, gen)
            x = normalize((x * 255.0), norm_meta).to(dev).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            loss = F.cross_entropy(out.float(), y.to(dev), weight=loss_weights, ignore_index=IGNORE)
            if not torch.isfinite(loss):
                raise UserError(f"segmenter loss became {loss.item()} at epoch {epoch + 1}; lower --lr "
                                f"(the last good state is in {partial})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        seconds += time.perf_counter() - tic
        record = {"epoch": epoch + 1, "loss": running / steps_per_epoch, "seconds": round(seconds, 1),
                  "lr": sched.get_last_lr()[0]}
        if eval_every and (epoch + 1) % eval_every == 0 and epoch + 1 < epochs:
            record["val100"] = _val_scores(model, norm_meta | {"classes": list(TRAIN_CLASSES), "input_size": size},
                                           data_dir, dev, limit=100, progress=False)
        atomic_torch_save({"format": PARTIAL_FORMAT, "settings": settings, "epoch": epoch + 1, "seconds": seconds,
                           "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict()}, partial)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    bar.close()
    if stop < epochs:
        print(f"stopped after epoch {stop} of {epochs}; continue with --resume")
        return partial
    meta = {"arch": arch, "encoder": encoder, "classes": list(TRAIN_CLASSES), "input_size": size,
            **norm_meta, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "recipe": {k: settings[k] for k in ("crop", "scale", "rare_crop", "balance", "amp")},
            "encoder_weights": None if encoder_weights is None else
            {"file": Path(encoder_weights).name, "sha256": file_sha256(encoder_weights)},
            "trained_on": {"data": str(data_dir.resolve()), "layout": data_layout(data_dir), "split": "train",
                           "images": len(pairs), "labels": _label_source(pairs)},
            "train_seconds": round(seconds, 1), "device": dev.type, "torch": str(torch.__version__),
            "smp": _smp_version()}
    model.eval()
    meta["val"] = _val_scores(model, meta, data_dir, dev, progress=progress)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "meta": meta, "state_dict": state}, out_path)
    partial.unlink(missing_ok=True)
    return out_path


def _read_partial(partial: Path) -> dict:
    try:
        state = torch.load(partial, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{partial} is damaged ({exc}); delete it and train again without --resume") from exc
    if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT or "settings" not in state:
        raise UserError(f"{partial} is not a segmenter training state; delete it and train again without --resume")
    return state


def _label_source(pairs: list) -> str:
    if pairs[0].label_kind == "ab_right":
        return "colour label map (B half), nearest palette colour"
    return "label PNGs (train ids or official labelIds)"


def _smp_version() -> str:
    import segmentation_models_pytorch as smp

    return str(smp.__version__)


def _val_scores(model: torch.nn.Module, meta: dict, data_dir: Path, device: torch.device, limit: int | None = None,
                progress: bool = True) -> dict | None:
    """FCN-score of DATA's real val photos (pixel / class / IoU), or None when DATA has no val split."""
    from p2p_eval.metrics.fcn_score import score_pairs
    from p2p_eval.segmentation.data import SegmentationPairs

    try:
        pairs = split_pairs(data_dir, "val")
    except UserError:
        return None
    pairs = pairs[:limit] if limit else pairs
    result, _ = score_pairs(model, meta, SegmentationPairs(pairs, meta["input_size"]), device,
                            progress=progress, bootstrap=0)
    return {"split": "val", "images": len(pairs), "pixel_accuracy": result["pixel_accuracy"],
            "class_accuracy": result["class_accuracy"], "class_iou": result["class_iou"],
            "iou": {k: v["iou"] for k, v in result["per_class"].items()}}
