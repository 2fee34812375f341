"""Cityscapes labels: official label ids, the 19 train ids, colour maps, and the pix2pix AB preparation.

The label table comes from ``cityscapesscripts.helpers.labels`` (the official Cityscapes scripts);
nothing here retypes it.  References:

- ``labelids_to_trainids`` matches cityscapesscripts' ``preparation/createTrainIdLabelImgs`` (every
  label id -> its ``trainId``; ids whose trainId is 255 or -1 -> 255 = ignore).
- ``prepare_cityscapes`` matches pix2pix's ``datasets/prepare_cityscapes_dataset.py``: the photo and the
  official colour label map (``*_gtFine_color.png``, i.e. each label id painted with its ``color``) side
  by side, frames in sorted name order.  We render the colour map from ``*_gtFine_labelIds.png`` (same
  colours) and write lossless PNGs plus train-id label PNGs.
- ``colors_to_trainids`` inverts a colour map by nearest palette colour (squared RGB distance).  The
  palette is the 19 train-class colours plus the colours of the void labels that no train class shares
  (``VOID_COLORS``); those map to 255.  Void labels that share a train class's colour (polegroup = pole,
  license plate = car) cannot be told apart by colour and map to that class.

Measured agreement of the nearest-colour decoding with the true train ids (tests/data/test_cityscapes.py
asserts floors just under these): colour maps painted from the official sample's labelIds, resized to 256
and JPEG-compressed as pix2pix's files are (quality 95 tables, 4:2:0 chroma): 0.960 of pixels (bicubic
resize, edges like pix2pix's files) / 0.974 (nearest); with 4:4:4 chroma 0.99999, so the loss is chroma
subsampling at class boundaries.  On ../shared/data/cityscapes/val (500 B halves, no true ids) the decoded
maps agree with their 3x3 majority filter on 0.973 of pixels, as in the bicubic simulation (0.973): the
estimated agreement there is ~0.96; 0.90 of its pixels lie within RGB distance 30 of a palette colour.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from cityscapesscripts.helpers.labels import labels as _LABELS
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from p2p_eval.errors import UserError, file_list, require_dir
from p2p_eval.fsutil import atomic_write_text
from p2p_eval.imageio import list_images, read_image, write_png

IGNORE = 255
NUM_CLASSES = 19

_TRAIN = sorted((lab for lab in _LABELS if 0 <= lab.trainId < IGNORE), key=lambda lab: lab.trainId)
TRAIN_CLASSES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN)
PALETTE: np.ndarray = np.array([lab.color for lab in _TRAIN], dtype=np.uint8)

ID_TO_TRAINID: np.ndarray = np.full(256, IGNORE, dtype=np.uint8)
ID_TO_COLOR: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
for _lab in _LABELS:
    if _lab.id >= 0:
        ID_TO_TRAINID[_lab.id] = _lab.trainId if 0 <= _lab.trainId < IGNORE else IGNORE
        ID_TO_COLOR[_lab.id] = _lab.color

# Void labels decoded by colour: all whose colour no train class shares, except caravan and trailer, whose
# dark blues (0,0,90) / (0,0,110) lie 20-32 RGB units from truck (0,0,70) and car (0,0,142): on JPEG-compressed
# maps they turned 0.3% of all pixels (car/truck edges) into void while being rare themselves (measured on the
# official sample rendered and compressed like pix2pix's files: agreement 0.957 -> 0.960).
_NOT_BY_COLOR = ("caravan", "trailer")
_train_colors = {tuple(c) for c in PALETTE.tolist()}
VOID_COLORS: np.ndarray = np.array(
    sorted({lab.color for lab in _LABELS
            if lab.id >= 0 and ID_TO_TRAINID[lab.id] == IGNORE and lab.name not in _NOT_BY_COLOR} - _train_colors),
    dtype=np.uint8,
)
"""Colours decoded to 255: unlabeled/ego vehicle/rectification border/out of roi/static (black), dynamic,
ground, parking, rail track, guard rail, bridge, tunnel."""

_MATCH_COLORS = np.concatenate([PALETTE, VOID_COLORS]).astype(np.int32)
_MATCH_IDS = np.concatenate([np.arange(NUM_CLASSES), np.full(len(VOID_COLORS), IGNORE)]).astype(np.uint8)

_TRAINID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
_TRAINID_TO_COLOR[:NUM_CLASSES] = PALETTE

SPLITS = ("train", "val")


def as_hwc(rgb: np.ndarray | torch.Tensor) -> np.ndarray:
    """A colour image as an (H, W, 3) uint8 array; accepts (3, H, W) / (4, H, W) tensors or HxWx3/4 arrays."""
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().cpu()
        if rgb.ndim == 3 and rgb.shape[0] in (3, 4):
            rgb = rgb.permute(1, 2, 0)
        rgb = rgb.numpy()
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 colour image, got {arr.dtype} {arr.shape}")
    return arr[..., :3]


def labelids_to_trainids(arr: np.ndarray | torch.Tensor) -> np.ndarray:
    """Official label ids (0..33) -> train ids (0..18, 255 ignore); cityscapesscripts' createTrainIdLabelImgs."""
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    return ID_TO_TRAINID[np.asarray(arr).astype(np.uint8)]


def colors_to_trainids(rgb: np.ndarray | torch.Tensor) -> np.ndarray:
    """Colour label map -> HxW uint8 train ids by nearest palette colour (train + void colours; void -> 255)."""
    img = as_hwc(rgb)
    h, w = img.shape[:2]
    flat = img.reshape(-1, 3)
    # Nearest colour over the unique colours only (a label map has few distinct colours, even after JPEG).
    codes = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    colors = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    # |c - p|^2 = |p|^2 - 2 c.p + |c|^2; the last term is the same for every p.  All terms are integers
    # below 2^24, so float32 is exact and ties resolve to the lower index (train classes first).
    palette = _MATCH_COLORS.astype(np.float32)
    nearest = np.argmin((palette * palette).sum(1)[None, :] - 2.0 * colors.astype(np.float32) @ palette.T, axis=1)
    return _MATCH_IDS[nearest][inverse.reshape(-1)].reshape(h, w)


def trainids_to_colors(ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """Train ids -> HxWx3 uint8 colours of the Cityscapes palette (255 and unknown ids -> black)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return _TRAINID_TO_COLOR[np.asarray(ids).astype(np.uint8)]


def labelids_to_colors(ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """Official label ids -> HxWx3 colours, as in the official ``*_gtFine_color.png`` (void labels keep theirs)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return ID_TO_COLOR[np.asarray(ids).astype(np.uint8)]


def resize_nearest(ids: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Resize a label map (HxW or HxWxC) with nearest neighbour; labels are never interpolated.

    torchvision's ``NEAREST_EXACT`` (PIL's NEAREST sampling: pixel centres).  A numpy array comes back as a
    numpy array, a tensor as a tensor of the same dtype; the one label resize of the package.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(ids.shape[:2]) == hw:
        return ids
    t = ids if isinstance(ids, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(ids))
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    out = F.resize(t, list(hw), interpolation=InterpolationMode.NEAREST_EXACT)
    out = out[0] if ids.ndim == 2 else out.permute(1, 2, 0)
    return out if isinstance(ids, torch.Tensor) else out.numpy()


#: The label formats a folder of label maps can hold; ``--label-format`` states one, else :func:`label_format`
#: decides it once for the whole folder.
LABEL_FORMATS = ("trainids", "labelids", "color")
#: Values each single-channel format allows: train ids 0..18 plus 255 (void); official labelIds 0..33.
_ALLOWED = {"trainids": np.isin(np.arange(256), [*range(NUM_CLASSES), IGNORE]),
            "labelids": np.arange(256) <= max(lab.id for lab in _LABELS)}
_DESCRIBED = {"trainids": "train ids (0..18, 255)", "labelids": "official labelIds (0..33)"}


def _is_palette_png(path: Path) -> bool:
    """True for an indexed-colour ("P" mode) image, whose indices are palette slots, not label ids."""
    try:
        with Image.open(path) as im:
            return im.mode == "P"
    except (OSError, UnidentifiedImageError):
        return False  # read_image reports the unreadable file


def _read_label(path: Path) -> torch.Tensor:
    return read_image(path, mode="rgb" if _is_palette_png(path) else "unchanged")


def _outside(fmt: str, values: np.ndarray) -> list[int]:
    return [int(v) for v in values if not _ALLOWED[fmt][v]]


def label_format(paths: list[Path], stated: str | None = None) -> str:
    """The one format of a folder of label maps: ``stated`` when given, else decided from every map together.

    Colour maps (3-4 channels or an indexed-colour PNG) are ``color``; single-channel maps are ``labelids`` when
    every name ends in ``labelIds``, ``trainids`` when every name ends in ``trainIds``, else the format that all
    of their values fit (train ids when both fit). A folder that mixes colour and single-channel maps, or whose
    values fit neither format, is refused in one line naming a file and its value.
    """
    if stated is not None:
        if stated not in LABEL_FORMATS:
            raise UserError(f"unknown label format {stated!r}; valid: {', '.join(LABEL_FORMATS)}")
        return stated
    return _decide_format({Path(p): _read_label(Path(p)) for p in paths})


def _decide_format(images: dict[Path, torch.Tensor]) -> str:
    """:func:`label_format` over label maps already read."""
    colour = [p for p, im in images.items() if im.shape[0] >= 3]
    if colour and len(colour) < len(images):
        plain = next(p for p, im in images.items() if im.shape[0] < 3)
        raise UserError(f"label maps mix colour maps ({colour[0]}) and single-channel maps ({plain}); "
                        "give one format per folder")
    if colour:
        return "color"
    stems = [p.stem.lower() for p in images]
    for fmt, suffix in (("labelids", "labelids"), ("trainids", "trainids")):
        if stems and all(s.endswith(suffix) for s in stems):
            return fmt
    values = {p: np.unique(im[0].numpy()) for p, im in images.items()}
    bad = {fmt: [p for p, v in values.items() if _outside(fmt, v)] for fmt in _ALLOWED}
    fmt = min(_ALLOWED, key=lambda f: len(bad[f]))  # train ids first on a tie
    if bad[fmt]:
        path = bad[fmt][0]
        raise UserError(f"{path}: value {_outside(fmt, values[path])[0]} is not among the "
                        f"{_DESCRIBED[fmt]} of the other label maps; fix the map or state --label-format")
    return fmt


def load_label_map(path: str | Path, size: int | tuple[int, int] | None = None,
                   fmt: str | None = None) -> np.ndarray:
    """Read a label PNG as HxW uint8 train ids, resized with nearest neighbour when ``size`` is given.

    ``fmt`` is the folder's format (:func:`label_format`); without it the format is decided from this map alone.
    A colour map is decoded by nearest palette colour; a single-channel map must hold only its format's values
    (one line naming the file and the value otherwise).
    """
    path = Path(path)
    image = _read_label(path)
    fmt = fmt or _decide_format({path: image})
    if (image.shape[0] >= 3) != (fmt == "color"):
        raise UserError(f"{path}: a {'colour' if image.shape[0] >= 3 else 'single-channel'} map in a folder of "
                        f"{fmt} label maps; give one format per folder")
    if fmt == "color":
        ids = colors_to_trainids(image[:3])
    else:
        raw = image[0].numpy()
        bad = _outside(fmt, np.unique(raw))
        if bad:
            raise UserError(f"{path}: value {bad[0]} is not one of the {_DESCRIBED[fmt]}; fix the map or state "
                            "--label-format")
        ids = raw if fmt == "trainids" else labelids_to_trainids(raw)
    return ids if size is None else resize_nearest(ids, size)


_FRAME = re.compile(r"^(.*)_leftImg8bit$")


def ab_frames(data_dir: str | Path, split: str) -> list[tuple[str, Path, Path | None]]:
    """(name, AB image, train-id label PNG or None) for every image of DIR/SPLIT, in natural name order.

    The label is DIR/SPLIT_labels/NAME.png when that folder exists (every image must have one); without
    the folder it is None: decode the B half's colours (:func:`colors_to_trainids`).
    """
    data_dir = Path(data_dir)
    images = list_images(data_dir / split, f"{split} folder of {data_dir}")
    if not images:
        raise UserError(f"{data_dir / split} holds no images (.png/.jpg)")
    labels_dir = data_dir / f"{split}_labels"
    if not labels_dir.is_dir():
        return [(img.stem, img, None) for img in images]
    paths = {p.stem: p for p in list_images(labels_dir)}
    missing = [img.name for img in images if img.stem not in paths]
    if missing:
        raise UserError(f"{labels_dir} lacks label PNGs for {file_list(missing)}; re-run the data preparation")
    return [(img.stem, img, paths[img.stem]) for img in images]


def official_frames(root: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(frame, photo, labelIds) of one split of the official layout, sorted by frame name ([] when none).

    Photos are ROOT/leftImg8bit/SPLIT/CITY/F_leftImg8bit.png, labels ROOT/gtFine/SPLIT/CITY/F_gtFine_labelIds.png;
    photos without labels are a UserError listing them.
    """
    root = Path(root)
    photos = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    frames, missing = [], []
    for photo in photos:
        frame = _FRAME.match(photo.stem).group(1)
        label = root / "gtFine" / split / photo.parent.name / f"{frame}_gtFine_labelIds.png"
        if label.is_file():
            frames.append((frame, photo, label))
        else:
            missing.append(label)
    if missing:
        raise UserError(f"Cityscapes {split}: no gtFine labelIds for {len(missing)} photos: {file_list(missing)}; "
                        "unpack gtFine_trainvaltest.zip into the same root")
    return sorted(frames)


def split_labels(data_dir: str | Path, split: str, size: int | tuple[int, int] | None = None,
                 progress: bool = True) -> list[tuple[str, np.ndarray]]:
    """(name, train ids) for every image of DIR/split, from DIR/split_labels if present, else the B half's colours
    (:func:`ab_frames`); ``progress=False`` shows no bar."""
    from p2p_eval.data.aligned import ab_half

    frames = ab_frames(data_dir, split)
    colour = frames[0][2] is None
    fmt = None if colour else label_format([label for _, _, label in frames])
    out: list[tuple[str, np.ndarray]] = []
    for name, image, label in tqdm(frames, desc=f"labels {split}" + (" (colour)" if colour else ""), unit="img",
                                   leave=False, disable=None if progress else True):
        if label is not None:
            out.append((name, load_label_map(label, size, fmt)))
            continue
        ids = colors_to_trainids(ab_half(read_image(image), image, "B"))
        out.append((name, ids if size is None else resize_nearest(ids, size)))
    return out


def prepare_cityscapes(root: str | Path, out: str | Path, size: int = 256, progress: bool = True) -> dict[str, int]:
    """Official Cityscapes release -> pix2pix AB pairs (photo | colour label) + train-id label PNGs.

    Writes OUT/SPLIT/N.png (photo resized bilinear with antialiasing | colour label map resized with
    nearest neighbour), OUT/SPLIT_labels/N.png (train ids, nearest) and OUT/SPLIT_frames.txt (line N =
    the Cityscapes frame of N.png) for the train and val splits present; N = 1.. in sorted frame order.
    ``progress=False`` shows no bars.
    """
    root = require_dir(root, "Cityscapes root")
    for sub in ("leftImg8bit", "gtFine"):
        require_dir(root / sub, f"Cityscapes {sub}/ folder (download {sub}_trainvaltest.zip and unpack it in the root)")
    if size < 1:
        raise UserError(f"--size must be positive, got {size}")
    splits = [s for s in SPLITS if (root / "leftImg8bit" / s).is_dir()]
    todo = {s: official_frames(root, s) for s in splits}
    todo = {s: frames for s, frames in todo.items() if frames}
    if not todo:
        raise UserError(f"no *_leftImg8bit.png photos under {root / 'leftImg8bit'}/{{train,val}}/CITY/; "
                        "is --root the folder that holds leftImg8bit/ and gtFine/?")
    out = Path(out)
    summary: dict[str, int] = {}
    for split, frames in todo.items():
        bar = tqdm(frames, desc=f"cityscapes {split}", unit="frame", disable=None if progress else True)
        for n, (_, photo_path, label_path) in enumerate(bar, start=1):
            photo = F.resize(read_image(photo_path), [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
            label_ids = resize_nearest(read_image(label_path, mode="gray")[0].numpy(), size)
            colour = torch.from_numpy(labelids_to_colors(label_ids)).permute(2, 0, 1)
            write_png(out / split / f"{n}.png", torch.cat([photo, colour], dim=2))
            write_png(out / f"{split}_labels" / f"{n}.png", torch.from_numpy(labelids_to_trainids(label_ids)))
        atomic_write_text(out / f"{split}_frames.txt", "".join(f"{frame}\n" for frame, _, _ in frames))
        summary[split] = len(frames)
    return summary
