"""``p2p-eval fcn-score``: FCN-score of a folder of generated images (or of the real val photos); several
folders (``--images`` repeated) are compared pair by pair with a paired bootstrap on the frames they share."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, nonnegative_int, positive_int
from p2p_eval.outputs import declare

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fcn-score``."""
    parser = sub.add_parser(
        "fcn-score", help="FCN-score: segment generated photos and score them against the labels (paper 4.1)",
        description="Segment every image of --images (in a folder written by pix2pix's test script: its *_fake_B images) with a segmenter trained on real photos and score the "
        "predictions against the labels of the same frames: per-pixel accuracy, mean per-class accuracy, mean "
        "class IoU over the 19 Cityscapes train classes (void ignored) from one confusion matrix over the set, "
        "with 95% bootstrap intervals over images. Images are matched to labels by file name and resized to the "
        "segmenter's input size; labels are resized by nearest neighbour. --data DIR --real scores DIR's real "
        "val photos (the 'ground truth' row); with --images it scores the real photos of exactly the frames the images "
        "cover, in the same table. A folder covering only some frames is scored on those and marked as a subset. "
        "Repeat --images (with --names) to compare sets: for every pair, the difference of each score with a paired "
        "bootstrap CI and p-value over the frames both cover (the same resamples for both sets).")
    parser.add_argument("--images", type=Path, action="append", metavar="DIR",
                        help="folder of generated images (PNG/JPEG), named like the labels; repeat it to compare sets")
    parser.add_argument("--names", action="append", metavar="NAME",
                        help="a name for each --images folder, in order (repeat it, or NAME,NAME,...; default: the "
                        "folders' names)")
    parser.add_argument("--only-fake-b", action="store_true",
                        help="in a folder that mixes pix2pix's *_fake_B images with other images, score only the "
                        "*_fake_B images (without it such a folder is refused)")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", type=Path, help="folder of label maps: train-id PNGs, official *_labelIds.png or colour maps")
    parser.add_argument("--label-format", metavar="trainids|labelids|color", help="the format of every map in "
                        "--labels (default: decided from all of them; a map with a value outside it is refused)")
    labels.add_argument("--data", type=Path, help="data folder (AB layout or official Cityscapes); its val split gives the labels")
    parser.add_argument("--segmenter", type=Path,
                        help="segmenter file (.safetensors or .pt of `p2p-eval segmenter train`); default: the shipped "
                        "Cityscapes segmenter (`p2p-eval segmenter info`)")
    parser.add_argument("--protocol", choices=("resized", "original"), default="resized",
                        help="resized (default): images and labels at the segmenter's input size; original: as pix2pix's "
                        "script, labels = official gtFine labelIds at full resolution (--labels CITYSCAPES/gtFine/val), "
                        "class means diag/(sum+1e-12); a segmenter trained on whole non-square frames segments each "
                        "image upsampled to the label size (the paper's computation), a square one segments at its "
                        "input and its class scores are upsampled (the output says which)")
    parser.add_argument("--frames", type=Path, metavar="FILE",
                        help="with --protocol original: the SPLIT_frames.txt of `data prepare-cityscapes`, mapping "
                        "numbered images (N.png) to official frame names")
    parser.add_argument("--json", type=Path, help="write the scores as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--save-predictions", type=Path, metavar="DIR",
                        help="write each prediction as DIR/NAME.png (train ids) and DIR/color/NAME.png (palette)")
    parser.add_argument("--real", action="store_true",
                        help="score the real val photos of --data: all of them, or with --images those of exactly the "
                        "frames the images cover, as one more set named 'real' compared with each folder")
    parser.add_argument("--real-size", type=positive_int, metavar="N",
                        help="with --real: first resize the photos to N x N, the resolution of the generated images "
                        "they are compared with (e.g. 64 for a 64 px generator), so both pass the same bottleneck")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--bootstrap", type=nonnegative_int, default=1000, help="bootstrap replicates for the 95%% CIs; 0 = none (default 1000)")
    parser.add_argument("--original-means", action="store_true",
                        help="average per-class scores like the original script (diag/(sum+1e-12): absent classes count 0) "
                        "instead of over the classes present")
    parser.add_argument("--per-class", action="store_true",
                        help="add each class's 95%% bootstrap interval (table and JSON); with several sets, the "
                        "per-class IoU table and each pair's per-class paired differences")
    parser.add_argument("--per-image", type=Path, metavar="FILE.npz",
                        help="save the per-image confusion matrices (names, confusions) of a single --images set, e.g. for "
                        "p2p_eval.metrics.bootstrap.paired_bootstrap")
    parser.add_argument("--workers", type=nonnegative_int, help="DataLoader workers decoding ahead (default: CPUs - 1, at most 8)")
    add_quiet(parser)
    parser.set_defaults(func=_fcn_score)
    parser.add_argument("--overwrite", action="store_true", help="allow --save-predictions to write into a folder "
                        "that already holds files")
    declare(parser, folders=["save_predictions"], files=["json", "per_image"],
            inputs=["images", "labels", "data", "segmenter"])


def _fcn_score(args: argparse.Namespace) -> int:
    from p2p_eval.fsutil import write_json
    from p2p_eval.metrics.fcn_score import format_table, score_folder

    result = score_folder(args.images, args.segmenter, labels_dir=args.labels, data_dir=args.data, real=args.real,
                          device=args.device, batch_size=args.batch_size, save_predictions=args.save_predictions,
                          seed=args.seed, bootstrap=args.bootstrap, num_workers=args.workers,
                          convention="original" if args.original_means else None, per_image_out=args.per_image,
                          label_format=args.label_format,
                          protocol=args.protocol, frames_file=args.frames, progress=not args.quiet,
                          real_size=args.real_size, per_class=args.per_class, fake_b_only=args.only_fake_b,
                          names=[n for item in args.names or [] for n in item.split(",") if n])
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
