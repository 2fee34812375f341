"""Training the FCN-score segmenter on a CPU in hours, not days: random crops of in-memory frames.

Recipe (the shipped segmenter's; see its model card):

- Every training frame is decoded once at the scoring size S (256; or W x H for non-square frames, e.g.
  the official layout at 1024 x 512, recorded as ``input_hw``) and held in memory as uint8
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

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from p2p_eval.confusion import ConfusionMatrix
from p2p_eval.data.cityscapes import TRAIN_CLASSES
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError
from p2p_eval.fsutil import append_line, atomic_torch_save, file_sha256, torch_load
from p2p_eval.segmentation.data import Pair, SegmentationPairs, data_layout, default_workers, preload, split_pairs
from p2p_eval.segmentation.model import (DEFAULT_ARCH, DEFAULT_ENCODER, FORMAT, IGNORE, IMAGENET_MEAN, IMAGENET_STD,
                                         PARTIAL_FORMAT, build_segmenter, input_hw, load_segmenter, logits,
                                         normalize)


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
    """Augmented crops (uint8 (B, 3, crop, crop), int64 (B, crop, crop)) of the frames ``indices`` (square or
    not: windows fit the shorter side)."""
    height, width = photos.shape[-2:]
    out_x, out_y = [], []
    for i in indices.tolist():
        label = labels[i]
        s = float(torch.empty(()).uniform_(scale[0], scale[1], generator=gen))
        win = max(8, min(height, width, round(crop / s)))
        if float(torch.rand((), generator=gen)) < rare_crop:
            present = torch.bincount(label[label != IGNORE].long(), minlength=len(weights))[: len(weights)] > 0
            probs = weights * present
            if float(probs.sum()) > 0:
                cls = int(torch.multinomial(probs, 1, generator=gen))
                ys, xs = torch.nonzero(label == cls, as_tuple=True)
                k = int(torch.randint(len(ys), (), generator=gen))
                cy, cx = int(ys[k]), int(xs[k])
                top = min(max(cy - win // 2, 0), height - win)
                left = min(max(cx - win // 2, 0), width - win)
            else:
                top = int(torch.randint(height - win + 1, (), generator=gen))
                left = int(torch.randint(width - win + 1, (), generator=gen))
        else:
            top = int(torch.randint(height - win + 1, (), generator=gen))
            left = int(torch.randint(width - win + 1, (), generator=gen))
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


@dataclass(frozen=True)
class SegmenterRecipe:
    """What the trained weights depend on (stored in ``OUT.partial``; a resume needs the same recipe).

    Frames are ``size`` x ``size``, or ``size`` wide and ``height`` high (``--size WxH``, e.g. the official
    layout's 2:1 frames at 1024x512); ``crop=None`` trains on whole square frames (on non-square frames:
    windows of the shorter side); ``limit`` uses only the first
    frames of the train split; ``encoder_weights`` is a local file (None: from scratch)."""

    epochs: int = 30
    size: int = 256
    arch: str = DEFAULT_ARCH
    encoder: str = DEFAULT_ENCODER
    encoder_weights: str | Path | None = None
    batch_size: int = 16
    lr: float = 2e-3
    crop: int | None = 160
    scale: tuple[float, float] = (0.75, 1.5)
    rare_crop: float = 0.5
    balance: float = 0.5
    amp: bool = True
    limit: int | None = None
    seed: int = 0
    height: int | None = None

    @property
    def window(self) -> int:
        """The side of the training crops."""
        return min(self.hw) if self.crop is None else self.crop

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of the training frames."""
        return (self.size if self.height is None else self.height, self.size)

    @property
    def frame_size(self) -> int | tuple[int, int]:
        """What the frames are decoded at: the side of square frames, else (height, width)."""
        return self.size if self.height is None else self.hw


@dataclass(frozen=True)
class SegmenterRun:
    """How one training call runs (nothing here changes the weights).

    ``resume`` continues ``OUT.partial``; ``max_epochs_this_run`` stops after that many epochs, leaving
    ``OUT.partial`` for a later resume; ``eval_every`` epochs the first 100 val frames are scored into the
    log; ``cache_dir`` holds the decoded frames ("default": :func:`default_cache_dir`, None: no cache);
    ``num_workers`` decode the frames once."""

    device: str = "auto"
    resume: bool = False
    eval_every: int = 5
    cache_dir: str | Path | None = "default"
    max_epochs_this_run: int | None = None
    num_workers: int | None = None
    progress: bool = True


def train_segmenter(data_dir: str | Path, out_path: str | Path, recipe: SegmenterRecipe | None = None,
                    run: SegmenterRun | None = None, **fields: Any) -> Path:
    """Train a segmenter on DATA's train split (real photos -> train ids), score it on DATA's val photos,
    and write the one-file checkpoint ``out_path``; returns ``out_path`` (or ``OUT.partial`` when
    ``run.max_epochs_this_run`` stopped it early).

    ``fields`` set fields of ``recipe`` or ``run`` by name (``epochs=2, device="cpu"``).  ``OUT.partial``
    is written after every epoch; ``OUT.log.jsonl`` gets one line per epoch (loss, seconds, and every
    ``eval_every`` epochs the val scores of the first 100 val frames).
    """
    recipe, run = _with_fields(recipe or SegmenterRecipe(), run or SegmenterRun(), fields)
    _check_recipe(recipe)
    data_dir, out_path = Path(data_dir), Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    if run.resume and not partial.is_file() and out_path.is_file():
        _, meta = load_segmenter(out_path, "cpu")
        print(f"{out_path} is already trained ({meta['epochs']} epochs); nothing to resume")
        return out_path
    state = _TrainingState.start(data_dir, recipe, run, partial)
    stop = recipe.epochs if run.max_epochs_this_run is None else min(recipe.epochs,
                                                                      state.epoch + run.max_epochs_this_run)
    bar = tqdm(total=recipe.epochs * state.steps_per_epoch, initial=state.epoch * state.steps_per_epoch,
               desc="segmenter", unit="step", disable=None if run.progress else True)
    log_path = out_path.with_name(out_path.name + ".log.jsonl")
    while state.epoch < stop:
        record = state.train_epoch(bar, partial)
        if run.eval_every and state.epoch % run.eval_every == 0 and state.epoch < recipe.epochs:
            record["val100"] = val_scores(state.model, state.meta(), data_dir, state.device, limit=100, progress=False)
        state.save_partial(partial)
        append_line(log_path, json.dumps(record))
    bar.close()
    if stop < recipe.epochs:
        print(f"stopped after epoch {stop} of {recipe.epochs}; continue with --resume")
        return partial
    meta = {**state.meta(), **_provenance(data_dir, recipe, state)}
    state.model.eval()
    meta["val"] = val_scores(state.model, meta, data_dir, state.device, progress=run.progress)
    weights = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "meta": meta, "state_dict": weights}, out_path)
    partial.unlink(missing_ok=True)
    return out_path


def _with_fields(recipe: SegmenterRecipe, run: SegmenterRun,
                 fields: dict[str, Any]) -> tuple[SegmenterRecipe, SegmenterRun]:
    """``recipe`` and ``run`` with the named fields replaced; TypeError naming an unknown field."""
    names = {f.name for f in dataclasses.fields(SegmenterRecipe)}
    unknown = set(fields) - names - {f.name for f in dataclasses.fields(SegmenterRun)}
    if unknown:
        raise TypeError(f"train_segmenter got unknown settings: {', '.join(sorted(unknown))}")
    return (dataclasses.replace(recipe, **{k: v for k, v in fields.items() if k in names}),
            dataclasses.replace(run, **{k: v for k, v in fields.items() if k not in names}))


def _check_recipe(recipe: SegmenterRecipe) -> None:
    epochs, (height, width), crop, scale = recipe.epochs, recipe.hw, recipe.window, recipe.scale
    if epochs < 1 or min(height, width) < 32 or height % 32 or width % 32 or crop < 32 or crop % 32 \
            or crop > min(height, width):
        raise UserError(f"need epochs >= 1, sides that are multiples of 32 and a crop that is a multiple of 32 "
                        f"no larger than the shorter side (got epochs={epochs}, size={width}x{height}, crop={crop})")
    if not 0 < scale[0] <= scale[1]:
        raise UserError(f"the scale range must be 0 < low <= high, got {scale}")


def _settings(recipe: SegmenterRecipe, train_images: int) -> dict[str, Any]:
    """The recipe as stored in ``OUT.partial`` (a resume must find the same)."""
    return {"arch": recipe.arch, "encoder": recipe.encoder, "input_size": recipe.size, "epochs": recipe.epochs,
            "batch_size": recipe.batch_size, "lr": recipe.lr, "seed": recipe.seed, "train_images": train_images,
            "crop": recipe.window, "scale": list(recipe.scale), "rare_crop": recipe.rare_crop,
            "balance": recipe.balance, "amp": recipe.amp,
            **({} if recipe.height is None else {"input_hw": list(recipe.hw)})}


class _TrainingState:
    """The frames in memory, the model, optimiser and schedule of one training, and the epoch it is at."""

    def __init__(self, recipe: SegmenterRecipe, device: torch.device, pairs: list[Pair], photos: torch.Tensor,
                 labels: torch.Tensor) -> None:
        self.recipe, self.device, self.pairs, self.photos, self.labels = recipe, device, pairs, photos, labels
        self.settings = _settings(recipe, len(pairs))
        self.weights = class_weights(labels, len(TRAIN_CLASSES), recipe.balance)
        torch.manual_seed(recipe.seed)
        model = build_segmenter(recipe.arch, recipe.encoder, len(TRAIN_CLASSES), recipe.encoder_weights).to(device)
        self.model = model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=recipe.lr, weight_decay=1e-4)
        count = len(photos)
        self.steps_per_epoch = count // recipe.batch_size if count >= recipe.batch_size else 1
        total = recipe.epochs * self.steps_per_epoch
        warm = min(self.steps_per_epoch, total // 10 + 1)

        def lr_factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / max(1, total - warm)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor)
        self.epoch, self.seconds = 0, 0.0
        self.norm_meta = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    @classmethod
    def start(cls, data_dir: Path, recipe: SegmenterRecipe, run: SegmenterRun, partial: Path) -> _TrainingState:
        """Load the frames, build the model and, with ``run.resume``, continue from ``partial``."""
        pairs = split_pairs(data_dir, "train")
        pairs = pairs[:recipe.limit] if recipe.limit else pairs
        cache = default_cache_dir() if run.cache_dir == "default" else run.cache_dir
        photos, labels = preload(pairs, recipe.frame_size, cache, progress=run.progress, num_workers=run.num_workers)
        state = cls(recipe, resolve_device(run.device), pairs, photos, labels)
        if run.resume and partial.is_file():
            saved = _read_partial(partial)
            if saved["settings"] != state.settings:
                raise UserError(f"{partial} was started with other settings ({saved['settings']}); "
                                "rerun with those settings or without --resume")
            state.model.load_state_dict(saved["state_dict"])
            state.opt.load_state_dict(saved["optimizer"])
            state.sched.load_state_dict(saved["scheduler"])
            state.epoch, state.seconds = int(saved["epoch"]), float(saved["seconds"])
        return state

    def train_epoch(self, bar: tqdm, partial: Path) -> dict[str, Any]:
        """One epoch (all randomness from a generator seeded with (seed, epoch)); returns its log record."""
        recipe, dev = self.recipe, self.device
        tic = time.perf_counter()
        gen = torch.Generator().manual_seed(recipe.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.photos), generator=gen)
        loss_weights = self.weights.to(dev)
        self.model.train()
        running = 0.0
        for step in range(self.steps_per_epoch):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x, y = sample_batch(self.photos, self.labels, idx, recipe.window, recipe.scale, recipe.rare_crop,
                                self.weights, gen)
            x = jitter(x.float() / 255.0, gen)
            x = normalize((x * 255.0), self.norm_meta).to(dev).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=recipe.amp):
                out = self.model(x)
            loss = F.cross_entropy(out.float(), y.to(dev), weight=loss_weights, ignore_index=IGNORE)
            if not torch.isfinite(loss):
                raise UserError(f"segmenter loss became {loss.item()} at epoch {self.epoch + 1}; lower --lr "
                                f"(the last good state is in {partial})")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            running += float(loss.detach())
            bar.update(1)
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss.item():.3f}")
        self.seconds += time.perf_counter() - tic
        self.epoch += 1
        return {"epoch": self.epoch, "loss": running / self.steps_per_epoch, "seconds": round(self.seconds, 1),
                "lr": self.sched.get_last_lr()[0]}

    def save_partial(self, partial: Path) -> None:
        atomic_torch_save({"format": PARTIAL_FORMAT, "settings": self.settings, "epoch": self.epoch,
                           "seconds": self.seconds, "state_dict": self.model.state_dict(),
                           "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}, partial)

    def meta(self) -> dict[str, Any]:
        """What scoring needs of the model: classes, input size (the width; ``input_hw`` (height, width) for
        non-square frames), normalisation."""
        shape = {} if self.recipe.height is None else {"input_hw": list(self.recipe.hw)}
        return {"arch": self.recipe.arch, "encoder": self.recipe.encoder, "classes": list(TRAIN_CLASSES),
                "input_size": self.recipe.size, **shape, **self.norm_meta}


def _provenance(data_dir: Path, recipe: SegmenterRecipe, state: _TrainingState) -> dict[str, Any]:
    """The checkpoint's record of how it was made (beside :meth:`_TrainingState.meta`)."""
    weights = recipe.encoder_weights
    return {"epochs": recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr, "seed": recipe.seed,
            "recipe": {k: state.settings[k] for k in ("crop", "scale", "rare_crop", "balance", "amp")},
            "encoder_weights": None if weights is None else {"file": Path(weights).name,
                                                             "sha256": file_sha256(weights)},
            "trained_on": {"data": str(data_dir.resolve()), "layout": data_layout(data_dir), "split": "train",
                           "images": len(state.pairs), "labels": _label_source(state.pairs)},
            "train_seconds": round(state.seconds, 1), "device": state.device.type, "torch": str(torch.__version__),
            "smp": _smp_version()}


def _read_partial(partial: Path) -> dict:
    state = torch_load(partial, "segmenter training state", "delete it and train again without --resume")
    if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT or "settings" not in state:
        raise UserError(f"{partial} is not a segmenter training state; delete it and train again without --resume")
    return state


def _label_source(pairs: list) -> str:
    if pairs[0].label_kind == "ab_right":
        return "colour label map (B half), nearest palette colour"
    return "label PNGs (train ids or official labelIds)"


def _smp_version() -> str:
    import segmentation_models_pytorch as smp  # here, not at the top: it imports timm, slow to import

    return str(smp.__version__)


def val_scores(model: torch.nn.Module, meta: dict, data_dir: Path, device: torch.device, limit: int | None = None,
               progress: bool = True, batch_size: int = 8) -> dict | None:
    """Scores of DATA's real val photos (pixel / class / IoU, one confusion matrix over the frames, class means
    over the classes present), or None when DATA has no val split.  The segmenter sees each photo as the
    FCN-score's does (:class:`~p2p_eval.segmentation.data.SegmentationPairs`, :func:`logits`)."""
    try:
        pairs = split_pairs(data_dir, "val")
    except UserError:
        return None
    pairs = pairs[:limit] if limit else pairs
    loader = torch.utils.data.DataLoader(SegmentationPairs(pairs, input_hw(meta)), batch_size=batch_size,
                                         num_workers=default_workers())
    cm = ConfusionMatrix(len(meta["classes"]), device=device, class_names=meta["classes"])
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="val", unit="batch", disable=None if progress else True):
            cm.update(logits(model, meta, batch["image"].to(device)).argmax(1), batch["label"].to(device))
    result = cm.compute()
    return {"split": "val", "images": len(pairs), "pixel_accuracy": result["pixel_accuracy"],
            "class_accuracy": result["class_accuracy"], "class_iou": result["class_iou"],
            "iou": {k: v["iou"] for k, v in result["per_class"].items()}}
