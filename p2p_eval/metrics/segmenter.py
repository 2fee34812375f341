"""The FCN-score segmenter: built with segmentation-models-pytorch, trained from scratch by the toolkit
on real photos -> train ids, saved as one versioned, fingerprinted file.

The paper used a Caffe FCN-8s trained on Cityscapes (Long et al.); it no longer runs, so we train our
own.  Default: U-Net on a ResNet-18 encoder.  Measured here (README, FCN-score section): on a short
from-scratch run (300 Cityscapes frames, 4 epochs, 64x64) U-Net/ResNet-18 reached val pixel / class /
IoU .719 / .212 / .152 against FPN .691 / .192 / .139 and DeepLabV3+ .715 / .209 / .150 (both
ResNet-18), since it predicts at full resolution where FPN and DeepLabV3+ predict at 1/4 and upsample;
on CPU at 256x256 it is the slowest of the three (1.04 s per batch of 8 against 0.80 / 0.88 s), a
price worth paying for the metric's resolution.  No ImageNet
weights are downloaded: ``encoder_weights`` may name a local ``.pth`` / ``.safetensors`` file.

A checkpoint is one ``torch.save`` dict of plain types and tensors, loaded with
``torch.load(weights_only=True)``: ``{"format", "meta", "state_dict"}``.  Its fingerprint is the
sha256 of the file's bytes (what ``sha256sum SEG.pt`` prints), computed on load.  Training state for
``--resume`` goes to ``SEG.pt.partial`` (written atomically each epoch, removed when training ends).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2p_eval.errors import UserError, require_dir, require_file, unknown_name

FORMAT = "p2p-eval-segmenter/1"
PARTIAL_FORMAT = "p2p-eval-segmenter-partial/1"
DEFAULT_ARCH = "unet"
DEFAULT_ENCODER = "resnet18"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE = 255


def _smp_archs() -> dict[str, Callable[..., nn.Module]]:
    import segmentation_models_pytorch as smp

    return {"unet": smp.Unet, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus, "linknet": smp.Linknet,
            "pspnet": smp.PSPNet, "unetplusplus": smp.UnetPlusPlus}


ARCHS: MappingProxyType[str, str] = MappingProxyType({
    "unet": "U-Net", "fpn": "Feature Pyramid Network (Kirillov et al.)", "deeplabv3plus": "DeepLabV3+",
    "linknet": "LinkNet", "pspnet": "PSPNet", "unetplusplus": "U-Net++"})


def build_segmenter(arch: str = DEFAULT_ARCH, encoder: str = DEFAULT_ENCODER, num_classes: int = 19,
                    encoder_weights: str | Path | None = None) -> nn.Module:
    """An untrained segmentation-models-pytorch model; ``encoder_weights`` is a local file or None (scratch)."""
    import segmentation_models_pytorch as smp

    if arch not in ARCHS:
        raise unknown_name("segmenter architecture", arch, ARCHS)
    if encoder not in smp.encoders.get_encoder_names():
        raise unknown_name("segmenter encoder", encoder, smp.encoders.get_encoder_names())
    model = _smp_archs()[arch](encoder_name=encoder, encoder_weights=None, classes=num_classes)
    if encoder_weights is not None:
        _load_encoder_weights(model, Path(encoder_weights))
    return model


def _load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load an ImageNet-style state dict (e.g. torchvision's resnet18-*.pth) into the encoder."""
    require_file(path, "encoder weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read encoder weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f"encoder weights {path} do not fit encoder {type(model.encoder).__name__}: "
                        f"missing {len(missing)} tensors, e.g. {missing[:3]}; use weights of the same encoder")
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise UserError(f"encoder weights {path}: wrong shapes for {wrong[:3]}; use weights of the same encoder")
    model.encoder.load_state_dict({k: state[k] for k in own})


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the segmenter fingerprint; equals ``sha256sum``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_segmenter(path: str | Path, device: str | torch.device = "auto", classes: list[str] | tuple[str, ...] | None = None,
                   input_size: int | None = None) -> tuple[nn.Module, dict]:
    """Load a segmenter checkpoint safely (weights_only); returns (model in eval mode, meta with "sha256").

    ``classes`` / ``input_size``: what the caller needs; a checkpoint made for another class set or input
    size raises UserError.
    """
    from p2p_eval.device import resolve_device

    path = require_file(path, "segmenter checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path} is not a readable segmenter checkpoint ({exc}); "
                        "make one with `p2p-eval segmenter train`") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, PARTIAL_FORMAT):
        raise UserError(f"{path} is not a p2p-eval segmenter checkpoint; make one with `p2p-eval segmenter train`")
    if ckpt["format"] == PARTIAL_FORMAT:
        raise UserError(f"{path} holds an unfinished training run; finish it with `p2p-eval segmenter train --resume`")
    meta = dict(ckpt["meta"])
    if classes is not None and list(meta["classes"]) != list(classes):
        raise UserError(f"segmenter {path} was trained for {len(meta['classes'])} classes "
                        f"({', '.join(meta['classes'][:4])}, ...), not the {len(classes)} asked for; "
                        "train one for this class set")
    if input_size is not None and int(meta["input_size"]) != int(input_size):
        raise UserError(f"segmenter {path} takes {meta['input_size']}x{meta['input_size']} inputs, not "
                        f"{input_size}x{input_size}; train one with --size {input_size}")
    model = build_segmenter(meta["arch"], meta["encoder"], len(meta["classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"segmenter {path}: weights do not match {meta['arch']}/{meta['encoder']} ({exc})") from exc
    meta["sha256"] = file_sha256(path)
    meta["path"] = str(path)
    return model.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval(), meta


# ----------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Pair:
    """One frame: where its photo and its labels come from.

    ``photo_kind`` / ``label_kind``: ``"ab_left"`` / ``"ab_right"`` (a half of an AB image) or ``"file"``.
    """

    name: str
    photo: Path
    photo_kind: str
    label: Path
    label_kind: str


def data_layout(data_dir: Path) -> str:
    """``official`` (leftImg8bit/ + gtFine/) or ``ab`` (DIR/SPLIT/*.png|jpg)."""
    return "official" if (data_dir / "leftImg8bit").is_dir() else "ab"


def split_pairs(data_dir: str | Path, split: str) -> list[Pair]:
    """The frames of one split, photos -> labels, for the AB layout or the official Cityscapes layout.

    AB: photo = left half of DIR/SPLIT/NAME; labels = DIR/SPLIT_labels/NAME.png if that folder exists,
    else the right half's colours (the rule of ``p2p_eval.data.cityscapes.split_labels``).  Official:
    leftImg8bit/SPLIT/CITY/F_leftImg8bit.png with gtFine/SPLIT/CITY/F_gtFine_labelIds.png.
    """
    from p2p_eval.errors import file_list
    from p2p_eval.imageio import list_images

    data_dir = require_dir(data_dir, "data folder")
    if data_layout(data_dir) == "official":
        photos = sorted((data_dir / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not photos:
            raise UserError(f"no photos in {data_dir / 'leftImg8bit' / split}/CITY/*_leftImg8bit.png")
        pairs, missing = [], []
        for photo in photos:
            frame = photo.stem[: -len("_leftImg8bit")]
            label = data_dir / "gtFine" / split / photo.parent.name / f"{frame}_gtFine_labelIds.png"
            (pairs if label.is_file() else missing).append(Pair(frame, photo, "file", label, "file"))
        if missing:
            raise UserError(f"no gtFine labelIds for {file_list(p.label for p in missing)}")
        return pairs
    images = list_images(data_dir / split, f"{split} folder of {data_dir}")
    if not images:
        raise UserError(f"{data_dir / split} holds no images")
    labels_dir = data_dir / f"{split}_labels"
    if labels_dir.is_dir():
        labels = {p.stem: p for p in list_images(labels_dir)}
        missing = [p.name for p in images if p.stem not in labels]
        if missing:
            raise UserError(f"{labels_dir} lacks label PNGs for {file_list(missing)}")
        return [Pair(p.stem, p, "ab_left", labels[p.stem], "file") for p in images]
    return [Pair(p.stem, p, "ab_left", p, "ab_right") for p in images]


def read_photo(pair: Pair) -> torch.Tensor:
    """The photo of a frame, uint8 (3, H, W)."""
    from p2p_eval.imageio import read_image

    image = read_image(pair.photo)
    return _half(image, pair.photo, left=True) if pair.photo_kind == "ab_left" else image


def read_label(pair: Pair, size: int | None = None) -> torch.Tensor:
    """The train ids of a frame, uint8 (H, W), resized with nearest neighbour to ``size`` when given."""
    from p2p_eval.data.cityscapes import colors_to_trainids, load_label_map
    from p2p_eval.imageio import read_image

    if pair.label_kind == "file":
        return torch.from_numpy(np.ascontiguousarray(load_label_map(pair.label, size)))
    ids = torch.from_numpy(colors_to_trainids(_half(read_image(pair.label), pair.label, left=False)))
    return ids if size is None else resize_label(ids, size)


def _half(image: torch.Tensor, path: Path, left: bool) -> torch.Tensor:
    w = image.shape[-1]
    if w % 2:
        raise UserError(f"{path} is {w} pixels wide; an AB image needs an even width (photo | label)")
    return image[..., : w // 2] if left else image[..., w // 2:]


def resize_photo(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size), bilinear with antialiasing."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(image, [size, size], antialias=True)


def resize_label(ids: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (H, W) -> (size, size) with nearest neighbour (labels are never interpolated)."""
    if tuple(ids.shape[-2:]) == (size, size):
        return ids
    return F.interpolate(ids[None, None].float(), size=(size, size), mode="nearest-exact")[0, 0].to(torch.uint8)


class SegmentationPairs(torch.utils.data.Dataset):
    """(photo uint8 (3, S, S), train ids uint8 (S, S)) pairs; ``augment`` adds the training augmentation.

    Augmentation: random scale s ~ U(1, 1.5) (resize to round(S*s)), random S x S crop, random horizontal
    flip, photometric jitter (brightness, contrast, saturation +-25 %, hue +-0.03).
    """

    def __init__(self, pairs: list[Pair], size: int, augment: bool = False) -> None:
        self.pairs, self.size, self.augment = pairs, size, augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        photo, label = read_photo(pair), read_label(pair)
        if photo.shape[-2:] != label.shape[-2:]:
            label = F.interpolate(label[None, None].float(), size=tuple(photo.shape[-2:]),
                                  mode="nearest-exact")[0, 0].to(torch.uint8)
        if self.augment:
            photo, label = _augment(photo, label, self.size)
        else:
            photo, label = resize_photo(photo, self.size), resize_label(label, self.size)
        return {"image": photo, "label": label, "name": pair.name, "index": index}


def _augment(photo: torch.Tensor, label: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.transforms import v2

    scaled = max(size, round(size * float(torch.empty(1).uniform_(1.0, 1.5))))
    photo, label = resize_photo(photo, scaled), resize_label(label, scaled)
    top = int(torch.randint(0, scaled - size + 1, ()))
    left = int(torch.randint(0, scaled - size + 1, ()))
    photo = photo[:, top:top + size, left:left + size]
    label = label[top:top + size, left:left + size]
    if bool(torch.rand(()) < 0.5):
        photo, label = photo.flip(-1), label.flip(-1)
    photo = v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03)(photo)
    return photo.contiguous(), label.contiguous()


def normalize(images: torch.Tensor, meta: dict) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, scaled to [0, 1] and normalised with the checkpoint's mean / std."""
    mean = torch.tensor(meta["mean"], device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def default_workers() -> int:
    """DataLoader workers: the CPU count minus one for the main process, at most 8."""
    import os

    return max(1, min(8, (os.cpu_count() or 2) - 1))


# ------------------------------------------------------------------------------------- training


def train_segmenter(data_dir: str | Path, out_path: str | Path, epochs: int = 30, size: int = 256,
                    device: str = "auto", arch: str = DEFAULT_ARCH, encoder: str = DEFAULT_ENCODER,
                    encoder_weights: str | Path | None = None, batch_size: int = 8, lr: float = 1e-3,
                    resume: bool = False, limit: int | None = None, seed: int = 0, num_workers: int | None = None,
                    progress: bool = True) -> Path:
    """Train a segmenter on DATA's train split (real photos -> train ids), score it on DATA's val photos,
    and write the one-file checkpoint ``out_path``; returns ``out_path``.

    AdamW (weight decay 1e-4), cosine learning-rate decay per step, cross-entropy with 255 ignored, the
    augmentation of :class:`SegmentationPairs`.  Each epoch ends with an atomic ``out_path.partial``;
    ``resume=True`` continues from it (same settings required).  ``limit`` trains on the first N frames.
    """
    from tqdm.auto import tqdm

    from p2p_eval.data.cityscapes import TRAIN_CLASSES
    from p2p_eval.device import resolve_device
    from p2p_eval.fsutil import atomic_torch_save

    data_dir, out_path = Path(data_dir), Path(out_path)
    if epochs < 1 or size < 32 or size % 32:
        raise UserError(f"need epochs >= 1 and a size that is a multiple of 32 (got epochs={epochs}, size={size})")
    dev = resolve_device(device)
    pairs = split_pairs(data_dir, "train")
    pairs = pairs[:limit] if limit else pairs
    partial = out_path.with_name(out_path.name + ".partial")
    settings = {"arch": arch, "encoder": encoder, "input_size": size, "epochs": epochs, "batch_size": batch_size,
                "lr": lr, "seed": seed, "train_images": len(pairs)}
    torch.manual_seed(seed)
    model = build_segmenter(arch, encoder, len(TRAIN_CLASSES), encoder_weights).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        SegmentationPairs(pairs, size, augment=True), batch_size=batch_size, shuffle=True, drop_last=len(pairs) > batch_size,
        num_workers=default_workers() if num_workers is None else num_workers, pin_memory=dev.type == "cuda",
        persistent_workers=False, generator=torch.Generator().manual_seed(seed))
    total_steps = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    start_epoch, seconds = 0, 0.0
    if resume and partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        if state.get("format") != PARTIAL_FORMAT or state["settings"] != settings:
            raise UserError(f"{partial} was started with other settings ({state.get('settings')}); "
                            "rerun with those settings or without --resume")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
    elif resume and out_path.is_file():
        _, meta = load_segmenter(out_path, "cpu")
        print(f"{out_path} is already trained ({meta['epochs']} epochs); nothing to resume")
        return out_path
    meta_mean, meta_std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    norm_meta = {"mean": meta_mean, "std": meta_std}
    bar = tqdm(total=total_steps, initial=start_epoch * len(loader), desc="segmenter", unit="step", disable=not progress)
    for epoch in range(start_epoch, epochs):
        tic = time.perf_counter()
        model.train()
        for batch in loader:
            images = normalize(batch["image"].to(dev, non_blocking=True), norm_meta)
            labels = batch["label"].to(dev, non_blocking=True).long()
            if dev.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        seconds += time.perf_counter() - tic
        atomic_torch_save({"format": PARTIAL_FORMAT, "settings": settings, "epoch": epoch + 1, "seconds": seconds,
                           "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}, partial)
    bar.close()
    layout = data_layout(data_dir)
    meta = {"arch": arch, "encoder": encoder, "classes": list(TRAIN_CLASSES), "input_size": size,
            "mean": meta_mean, "std": meta_std, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "encoder_weights": None if encoder_weights is None else
            {"file": Path(encoder_weights).name, "sha256": file_sha256(encoder_weights)},
            "trained_on": {"data": str(data_dir.resolve()), "layout": layout, "split": "train", "images": len(pairs),
                           "labels": _label_source(pairs)},
            "train_seconds": round(seconds, 1), "device": dev.type,
            "torch": str(torch.__version__), "smp": _smp_version()}
    model.eval()
    meta["val"] = _val_scores(model, meta, data_dir, dev, batch_size, progress)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "meta": meta, "state_dict": state}, out_path)
    partial.unlink(missing_ok=True)
    return out_path


def _label_source(pairs: list[Pair]) -> str:
    if pairs[0].label_kind == "ab_right":
        return "colour label map (B half), nearest palette colour"
    return "label PNGs (train ids or official labelIds)"


def _smp_version() -> str:
    import segmentation_models_pytorch as smp

    return str(smp.__version__)


def _val_scores(model: nn.Module, meta: dict, data_dir: Path, device: torch.device, batch_size: int,
                progress: bool) -> dict | None:
    """FCN-score of the real val photos (pixel / class / IoU), or None when DATA has no val split."""
    from p2p_eval.metrics.fcn_score import score_pairs

    try:
        pairs = split_pairs(data_dir, "val")
    except UserError:
        return None
    result, _ = score_pairs(model, meta, SegmentationPairs(pairs, meta["input_size"]), device,
                            batch_size=batch_size, progress=progress, bootstrap=0)
    return {"split": "val", "images": len(pairs), "pixel_accuracy": result["pixel_accuracy"],
            "class_accuracy": result["class_accuracy"], "class_iou": result["class_iou"]}
