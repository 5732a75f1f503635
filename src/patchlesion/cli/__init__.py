"""The ``patchlesion`` command: every step of the workflow, usable without Snakemake.

:mod:`.parser` builds the argument parser (the training settings' options generated from
:class:`patchlesion.engine.settings.TrainSettings`); :mod:`.commands` holds one handler per
subcommand, which reads its files and delegates to the package. ``python -m patchlesion.cli`` is
the same command.
"""

from __future__ import annotations

import logging
import sys

from patchlesion.cli.parser import build_parser
from patchlesion.errors import PatchlesionError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``patchlesion`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except PatchlesionError as error:
        print(f"patchlesion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path given on the command line that cannot be written or read
        if error.filename is None:
            raise
        print(f"patchlesion {args.command}: error: {error.filename}: {error.strerror}; check this path.", file=sys.stderr)
        return 2
    return 0
