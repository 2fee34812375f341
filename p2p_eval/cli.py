"""``p2p-eval``: the command line, a thin layer over the library.

Every module in :mod:`p2p_eval.commands` contributes its sub-commands.  User errors
(:class:`~p2p_eval.errors.UserError`) print one line and exit with status 2; ``--debug`` shows the
traceback.

One vocabulary across commands: ``--images`` for generated (candidate) images, ``--real`` for real
images, ``--labels`` only for label maps, ``--names`` for the names of image sets, ``--batch-size``,
and ``--quiet`` on every command that shows a progress bar.  Old spellings stay as hidden aliases for
one release and print a one-line note on stderr (the helpers for both are in :mod:`p2p_eval.cli_args`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from p2p_eval import commands
from p2p_eval.cli_args import OneLineParser
from p2p_eval.errors import UserError
from p2p_eval.outputs import check_args


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options plus one sub-parser per command."""
    parser = OneLineParser(
        prog="p2p-eval",
        description="Reproduce and evaluate pix2pix-style image-to-image translation "
        "(Isola et al., CVPR 2017): train, translate, score (FCN-score, colour, PSNR/SSIM/FID/LPIPS), "
        "run perceptual studies and regenerate the paper's tables.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    modules = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub)
    return parser


def _one_line(exc: UserError) -> str:
    """The user's line of ``exc``.  A UserError raised in a DataLoader worker process comes back with that
    worker's traceback in its message (torch's ExceptionWrapper re-raises it so); its last line is the original."""
    text = str(exc)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split("UserError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``p2p-eval`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error, already printed on one line (2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        check_args(args)
        result = args.func(args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"p2p-eval {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes it", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
