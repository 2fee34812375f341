"""``p2p-eval segmenter train``: train the FCN-score segmenter on real photos -> train ids."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 35


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``segmenter train``."""
    parser = sub.add_parser("segmenter", help="train the FCN-score segmenter (real photos -> Cityscapes train ids)",
                            description="The segmenter behind FCN-score, trained by the toolkit on real photos.")
    seg_sub = parser.add_subparsers(dest="segmenter_command", metavar="<segmenter command>")
    train = seg_sub.add_parser(
        "train", help="train a segmenter on DATA's train split and score it on DATA's real val photos",
        description="Train a segmentation-models-pytorch segmenter from scratch (or from a local encoder-weights file) "
        "on the real photos of --data (AB layout: left half, labels from DIR/train_labels or the colour right half; "
        "or the official Cityscapes layout) with random scale/crop/flip and colour jitter. Writes one checkpoint file "
        "(weights + metadata + its real-photo val FCN-score); OUT.partial keeps the state after each epoch for --resume.")
    train.add_argument("--data", required=True, type=Path, help="data folder with train/ (and val/ for the final score)")
    train.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. seg.pt")
    train.add_argument("--epochs", type=int, default=30, help="passes over the training images (default 30)")
    train.add_argument("--size", type=int, default=256, help="input size, the size of the generated images (default 256)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    train.add_argument("--arch", default="unet", help="unet, fpn, deeplabv3plus, linknet, pspnet, unetplusplus (default unet)")
    train.add_argument("--encoder", default="resnet18", help="segmentation-models-pytorch encoder (default resnet18)")
    train.add_argument("--encoder-weights", type=Path, metavar="FILE",
                       help="local encoder weights (.pth/.safetensors, e.g. torchvision's ImageNet resnet18); default: from scratch")
    train.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, cosine-decayed (default 1e-3)")
    train.add_argument("--limit", type=int, help="train on the first N training frames only")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--workers", type=int, help="DataLoader workers (default: CPUs - 1, at most 8)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.partial")
    train.set_defaults(func=_train)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _train(args: argparse.Namespace) -> int:
    from p2p_eval.metrics.segmenter import load_segmenter, train_segmenter

    out = train_segmenter(args.data, args.out, epochs=args.epochs, size=args.size, device=args.device, arch=args.arch,
                          encoder=args.encoder, encoder_weights=args.encoder_weights, batch_size=args.batch_size,
                          lr=args.lr, resume=args.resume, limit=args.limit, seed=args.seed, num_workers=args.workers)
    _, meta = load_segmenter(out, "cpu")
    val = meta.get("val")
    scores = ("no val split to score" if val is None else
              f"real-photo val FCN-score: pixel {val['pixel_accuracy']:.3f}, class {val['class_accuracy']:.3f}, "
              f"IoU {val['class_iou']:.3f} ({val['images']} images)")
    print(f"wrote {out} ({meta['arch']}/{meta['encoder']}, {meta['input_size']}x{meta['input_size']}, "
          f"{meta['epochs']} epochs, {meta['train_seconds']} s); {scores}")
    print(f"sha256 {meta['sha256']}")
    return 0
