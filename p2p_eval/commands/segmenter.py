"""``p2p-eval segmenter``: train the FCN-score segmenter, export it for shipping, print its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import nonnegative_float, nonnegative_int, positive_float, positive_int, probability
from p2p_eval.outputs import declare

ORDER = 35


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``segmenter train`` / ``segmenter export`` / ``segmenter info``."""
    parser = sub.add_parser("segmenter", help="the FCN-score segmenter: train one, export it, print its card",
                            description="The segmenter behind FCN-score, trained by the toolkit on real photos. "
                            "A default one, trained on Cityscapes at 256x256, ships with the toolkit "
                            "(`p2p-eval segmenter info`).")
    seg_sub = parser.add_subparsers(dest="segmenter_command", metavar="<segmenter command>")
    _register_train(seg_sub)
    export = seg_sub.add_parser("export", help="write a trained .pt segmenter as fp16 safetensors (the shipped form)",
                                description="Convert a checkpoint of `segmenter train` to fp16 safetensors with its "
                                "metadata in the header (no pickle); `fcn-score --segmenter` reads both forms.")
    export.add_argument("checkpoint", type=Path, help="SEG.pt written by `p2p-eval segmenter train`")
    export.add_argument("out", type=Path, help="SEG.safetensors to write")
    export.set_defaults(func=_export)
    declare(export, files=["out"], inputs=["checkpoint"])
    info = seg_sub.add_parser("info", help="print a segmenter's card: what it is, what it was trained on, its scores",
                              description="Print the metadata of a segmenter file (default: the shipped one) and its "
                              "real-photo val FCN-score, overall and per class; for the shipped segmenter also the path "
                              "of its model card.")
    info.add_argument("path", nargs="?", type=Path, help="segmenter file (.pt or .safetensors); default: the shipped one")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _register_train(seg_sub: argparse._SubParsersAction) -> None:
    train = seg_sub.add_parser(
        "train", help="train a segmenter on DATA's train split and score it on DATA's real val photos",
        description="Train a segmentation-models-pytorch segmenter from scratch (or from a local encoder-weights file) "
        "on the real photos of --data (AB layout: left half, labels from DIR/train_labels or the colour right half; "
        "or the official Cityscapes layout). Every frame is decoded once at --size and kept in memory; each step "
        "trains on random --crop windows (scale jitter, mirror, colour jitter, half of them centred on a rare "
        "class) with a class-balanced loss. Writes one checkpoint file (weights + metadata + its real-photo val "
        "FCN-score); OUT.partial keeps the state after each epoch for --resume, OUT.log.jsonl the loss per epoch.")
    train.add_argument("--data", required=True, type=Path, help="data folder with train/ (and val/ for the final score)")
    train.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. seg.pt")
    train.add_argument("--epochs", type=positive_int, default=44, help="passes over the training frames (default 44)")
    train.add_argument("--size", type=frame_size, default=(256, None), metavar="N|WxH",
                       help="input size, the size of the images to score: N (square) or WxH, e.g. 1024x512 for the "
                       "paper's full-resolution protocol on the official layout (default 256)")
    train.add_argument("--crop", type=positive_int,
                       help="training window side in pixels, at most --size (default: 128, or --size when smaller); "
                       "0 = whole frames")
    train.add_argument("--scale", type=positive_float, nargs=2, default=(0.75, 1.5), metavar=("LOW", "HIGH"),
                       help="zoom range of the training windows (default 0.75 1.5)")
    train.add_argument("--rare-crop", type=probability, default=0.5,
                       help="share of windows centred on a pixel of a class drawn by class weight (default 0.5)")
    train.add_argument("--balance", type=nonnegative_float, default=0.5,
                       help="class-weight exponent: (median freq / freq) ** BALANCE; 0 = plain cross-entropy (default 0.5)")
    train.add_argument("--no-amp", dest="amp", action="store_false", help="train in fp32 instead of bf16 autocast")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    train.add_argument("--arch", default="unet", help="unet, fpn, deeplabv3plus, linknet, pspnet, unetplusplus (default unet)")
    train.add_argument("--encoder", default="resnet18", help="segmentation-models-pytorch encoder (default resnet18)")
    train.add_argument("--encoder-weights", type=Path, metavar="FILE",
                       help="local encoder weights (.pth/.safetensors, e.g. torchvision's ImageNet resnet18); default: from scratch")
    train.add_argument("--batch-size", type=positive_int, default=16, help="windows per step (default 16)")
    train.add_argument("--lr", type=positive_float, default=2e-3, help="AdamW learning rate, warm-up then cosine decay (default 2e-3)")
    train.add_argument("--limit", type=positive_int, help="train on the first N training frames only")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--eval-every", type=positive_int, default=5, help="score 100 val frames every N epochs into the log (default 5)")
    train.add_argument("--stop-after", type=positive_int, metavar="N",
                       help="stop after N epochs of this run, leaving OUT.partial for a later --resume")
    train.add_argument("--workers", type=nonnegative_int, help="processes decoding the frames once (default: CPUs - 1, at most 8)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.partial (same settings)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)
    declare(train, files=["out"], inputs=["data"])


def _train(args: argparse.Namespace) -> int:
    from p2p_eval.segmentation.model import input_hw, load_segmenter
    from p2p_eval.segmentation.train import SegmenterRecipe, SegmenterRun, train_segmenter

    width, height = args.size
    recipe = SegmenterRecipe(epochs=args.epochs, size=width, height=height, arch=args.arch, encoder=args.encoder,
                             encoder_weights=args.encoder_weights, batch_size=args.batch_size, lr=args.lr,
                             crop=_crop(args.crop, min(width, height or width)), scale=tuple(args.scale),
                             rare_crop=args.rare_crop, balance=args.balance, amp=args.amp, limit=args.limit,
                             seed=args.seed)
    run = SegmenterRun(device=args.device, resume=args.resume, eval_every=args.eval_every,
                       max_epochs_this_run=args.stop_after, num_workers=args.workers, progress=not args.quiet)
    out = train_segmenter(args.data, args.out, recipe, run)
    if out != args.out:
        return 0
    _, meta = load_segmenter(out, "cpu")
    h, w = input_hw(meta)
    print(f"wrote {out} ({meta['arch']}/{meta['encoder']}, {w}x{h}, "
          f"{meta['epochs']} epochs, {meta['train_seconds']} s); {_val_line(meta.get('val'))}")
    print(f"sha256 {meta['sha256']}")
    return 0


def frame_size(text: str) -> tuple[int, int | None]:
    """``--size``: ``N`` -> (N, None), square frames; ``WxH`` -> (W, H)."""
    width, _, height = text.lower().partition("x")
    return positive_int(width), positive_int(height) if height else None


def _crop(crop: int | None, size: int) -> int | None:
    """--crop: None -> 128 (or the size when smaller); 0 -> whole frames (None)."""
    if crop is None:
        return min(128, size)
    return crop or None


def _val_line(val: dict | None) -> str:
    if val is None:
        return "no val split to score"
    return (f"real-photo val FCN-score: pixel {val['pixel_accuracy']:.3f}, class {val['class_accuracy']:.3f}, "
            f"IoU {val['class_iou']:.3f} ({val['images']} images)")


def _export(args: argparse.Namespace) -> int:
    from p2p_eval.segmentation.model import export_safetensors, file_sha256

    out = export_safetensors(args.checkpoint, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, fp16), sha256 {file_sha256(out)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from p2p_eval.segmentation.model import input_hw, read_meta, shipped_card, shipped_path

    meta = read_meta(args.path)
    shipped = args.path is None or Path(args.path).resolve() == shipped_path().resolve()
    print(f"segmenter {meta['path']}{' (shipped default)' if shipped else ''}")
    print(f"  sha256       {meta['sha256']}")
    print(f"  model        {meta['arch']} / {meta['encoder']}, {len(meta['classes'])} classes, "
          f"input {input_hw(meta)[1]}x{input_hw(meta)[0]}, weights {meta.get('weights_dtype', 'float32')}")
    trained = meta.get("trained_on", {})
    print(f"  trained on   {trained.get('images', '?')} {trained.get('split', '')} frames of {trained.get('data', '?')} "
          f"({trained.get('labels', '')})")
    print(f"  recipe       {meta['epochs']} epochs, batch {meta.get('batch_size')}, lr {meta.get('lr')}, "
          f"{meta.get('recipe', {})}; {meta.get('train_seconds', '?')} s on {meta.get('device', '?')}")
    print(f"  val          {_val_line(meta.get('val'))}")
    iou = (meta.get("val") or {}).get("iou")
    if iou:
        print("  val IoU per class: " + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in iou.items()))
    if shipped and shipped_card().is_file():
        print(f"model card: {shipped_card()}")
    return 0
