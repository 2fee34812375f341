"""The FCN-score segmenter as a model: built with segmentation-models-pytorch, saved and loaded safely.

Two file kinds, both loaded without pickle:

- ``SEG.pt``: what ``p2p-eval segmenter train`` writes, ``{"format", "meta", "state_dict"}`` read with
  ``torch.load(weights_only=True)``.
- ``SEG.safetensors``: the shipped form (fp16 weights; format and meta as one JSON string in the
  safetensors header, so that the same export always gives the same bytes).

A segmenter's fingerprint is the sha256 of its file's bytes (what ``sha256sum FILE`` prints), computed
on load and printed by every FCN-score report.  No ImageNet weights are downloaded: ``encoder_weights``
may name a local ``.pth`` / ``.safetensors`` file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, require_file, unknown_name
from p2p_eval.fsutil import atomic_write_bytes, file_sha256, torch_load

FORMAT = "p2p-eval-segmenter/1"
PARTIAL_FORMAT = "p2p-eval-segmenter-partial/1"
HEADER_KEY = "p2p_eval_segmenter"  # the safetensors metadata key holding {"format", "meta"} as JSON
DEFAULT_ARCH = "unet"
DEFAULT_ENCODER = "resnet18"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE = 255
SHIPPED_DIR = Path(__file__).parent / "weights"
SHIPPED_NAME = "cityscapes256"


def shipped_path() -> Path:
    """The default segmenter shipped with the package (package data): ``weights/cityscapes256.safetensors``."""
    return SHIPPED_DIR / f"{SHIPPED_NAME}.safetensors"


def shipped_card() -> Path:
    """The model card beside the shipped weights."""
    return SHIPPED_DIR / f"{SHIPPED_NAME}.md"


@dataclass(frozen=True)
class Arch:
    """A segmentation-models-pytorch architecture: its class in ``segmentation_models_pytorch`` and its name."""

    smp_class: str
    title: str


#: The architectures a segmenter can have, by the name ``--arch`` takes.
ARCHS: MappingProxyType[str, Arch] = MappingProxyType({
    "unet": Arch("Unet", "U-Net"), "fpn": Arch("FPN", "Feature Pyramid Network (Kirillov et al.)"),
    "deeplabv3plus": Arch("DeepLabV3Plus", "DeepLabV3+"), "linknet": Arch("Linknet", "LinkNet"),
    "pspnet": Arch("PSPNet", "PSPNet"), "unetplusplus": Arch("UnetPlusPlus", "U-Net++")})


def build_segmenter(arch: str = DEFAULT_ARCH, encoder: str = DEFAULT_ENCODER, num_classes: int = 19,
                    encoder_weights: str | Path | None = None) -> nn.Module:
    """An untrained segmentation-models-pytorch model; ``encoder_weights`` is a local file or None (scratch)."""
    import segmentation_models_pytorch as smp  # here, not at the top: it imports timm, slow for `p2p-eval --help`

    if arch not in ARCHS:
        raise unknown_name("segmenter architecture", arch, ARCHS)
    if encoder not in smp.encoders.get_encoder_names():
        raise unknown_name("segmenter encoder", encoder, smp.encoders.get_encoder_names())
    model = getattr(smp, ARCHS[arch].smp_class)(encoder_name=encoder, encoder_weights=None, classes=num_classes)
    if encoder_weights is not None:
        _load_encoder_weights(model, Path(encoder_weights))
    return model


def _load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load an ImageNet-style state dict (e.g. torchvision's resnet18-*.pth) into the encoder."""
    require_file(path, "encoder weights file")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise UserError(f"cannot read encoder weights {path}: {exc}") from exc
    else:
        state = torch_load(path, "encoder weights file", "give an ImageNet state dict such as torchvision's resnet18")
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


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(meta, state_dict) of a ``.pt`` or ``.safetensors`` segmenter; UserError for anything else."""
    hint = "make one with `p2p-eval segmenter train`"
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as fh:
                header = fh.metadata() or {}
                state = {k: fh.get_tensor(k) for k in fh.keys()}
            if HEADER_KEY in header:  # one key: the writer's map order cannot change the file's bytes
                header = json.loads(header[HEADER_KEY])
                meta = header.get("meta")
            else:  # the first shipped file: "format" and "meta" as two keys
                meta = json.loads(header.get("meta", "null"))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{path} is not a readable safetensors segmenter ({exc}); {hint}") from exc
        if header.get("format") != FORMAT or not isinstance(meta, dict):
            raise UserError(f"{path} is not a p2p-eval segmenter (no segmenter metadata in its header); {hint}")
        return meta, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    ckpt = torch_load(path, "segmenter checkpoint", hint)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, PARTIAL_FORMAT):
        raise UserError(f"{path} is not a p2p-eval segmenter checkpoint; {hint}")
    if ckpt["format"] == PARTIAL_FORMAT:
        raise UserError(f"{path} holds an unfinished training run; finish it with `p2p-eval segmenter train --resume`")
    return dict(ckpt["meta"]), ckpt["state_dict"]


def read_meta(path: str | Path | None = None) -> dict:
    """A segmenter file's metadata (with ``sha256`` and ``path``) without building the model."""
    path = require_file(shipped_path() if path is None else path, "segmenter file")
    meta, _ = _read_checkpoint(path)
    return {**meta, "sha256": file_sha256(path), "path": str(path)}


def load_segmenter(path: str | Path | None = None, device: str | torch.device = "auto",
                   classes: list[str] | tuple[str, ...] | None = None,
                   input_size: int | None = None) -> tuple[nn.Module, dict]:
    """Load a segmenter (``None``: the shipped default); returns (model in eval mode, meta with "sha256").

    ``classes`` / ``input_size``: what the caller needs; a segmenter made for another class set or input
    size raises UserError.
    """
    if path is None:
        path = shipped_path()
        if not path.is_file():
            raise UserError(f"the shipped segmenter {path} is missing from this install; reinstall p2p-eval "
                            "or give --segmenter FILE")
    path = require_file(path, "segmenter checkpoint")
    meta, state = _read_checkpoint(path)
    if classes is not None and list(meta["classes"]) != list(classes):
        raise UserError(f"segmenter {path} was trained for {len(meta['classes'])} classes "
                        f"({', '.join(meta['classes'][:4])}, ...), not the {len(classes)} asked for; "
                        "train one for this class set")
    if input_size is not None and int(meta["input_size"]) != int(input_size):
        raise UserError(f"segmenter {path} takes {meta['input_size']}x{meta['input_size']} inputs, not "
                        f"{input_size}x{input_size}; train one with --size {input_size}")
    model = build_segmenter(meta["arch"], meta["encoder"], len(meta["classes"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"segmenter {path}: weights do not match {meta['arch']}/{meta['encoder']} ({exc})") from exc
    meta["sha256"] = file_sha256(path)
    meta["path"] = str(path)
    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    return model.to(dev).eval(), meta


def export_safetensors(checkpoint: str | Path, out: str | Path, extra_meta: dict | None = None) -> Path:
    """Write a trained ``.pt`` segmenter as fp16 safetensors (the shipped form); returns ``out``."""
    meta, state = _read_checkpoint(require_file(checkpoint, "segmenter checkpoint"))
    meta = {**meta, **(extra_meta or {}), "weights_dtype": "float16"}
    meta.pop("sha256", None)
    meta.pop("path", None)
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    data = save(half, metadata={HEADER_KEY: json.dumps({"format": FORMAT, "meta": meta}, sort_keys=True)})
    return atomic_write_bytes(out, data)


def input_hw(meta: dict) -> tuple[int, int]:
    """(height, width) of the frames a segmenter was trained on: ``meta["input_hw"]`` (written by a training
    on non-square frames, ``segmenter train --size WxH``), else the square ``input_size``."""
    hw = meta.get("input_hw")
    return (int(hw[0]), int(hw[1])) if hw else (int(meta["input_size"]), int(meta["input_size"]))


def normalize(images: torch.Tensor, meta: dict) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, scaled to [0, 1] and normalised with the segmenter's mean / std."""
    mean = torch.tensor(meta["mean"], device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def logits(model: nn.Module, meta: dict, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) on the model's device -> float32 class scores (B, K, S, S).

    The same numerics on every device: bf16 autocast (about 1.5x faster than fp32 on a current CPU, and what
    a GPU runs), channels_last memory layout, scores returned in fp32.
    """
    x = normalize(images, meta).contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        out = model(x)
    return out.float()


def predict(model: nn.Module, meta: dict, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) on the model's device -> predicted train ids (B, S, S), int64."""
    return logits(model, meta, images).argmax(1)
