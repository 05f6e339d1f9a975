"""``loopmon replay FILE``: a recording in the window (play, pause, speed, jumps), or with
``--json``, its snapshots printed as fast as they decode: the objects ``attach --json`` prints
live (``cli/jsonout``), one a line, with the same ``t``.

A file that is not a recording, or of a newer format, is one line and exit status 1. A damaged
one (cut by a killed producer, or with corrupt records) prints what it can, and says on stderr
what was skipped and where the recording ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from loopmon.cli.jsonout import snapshot_object
from loopmon.wire.recording import RecordingError, RecordingReader

__all__ = ["add_arguments", "print_json", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a recording (serve/attach --record)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print every snapshot as a JSON object, one a line, as attach --json does",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="start this far into the recording (0)",
    )


def print_json(reader: RecordingReader, out: object, start: float = 0.0) -> int:
    """Print the snapshots from ``start``; how many."""
    write = out.write  # type: ignore[attr-defined]
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    n = 0
    previous = None
    for item in reader.snapshots(start):
        # ``previous`` as attach passes it: "loop" covers the interval since the object
        # before (from the running totals), so the figures match attach's to the last digit.
        write(dumps(snapshot_object(item.snapshot, previous=previous)))
        write("\n")
        previous = item.snapshot
        n += 1
    return n


def _tell(path: str, reader: RecordingReader) -> None:
    for problem in reader.problems:
        print(f"loopmon replay: {path}: {problem}", file=sys.stderr)
    if reader.problems or not reader.indexed:
        print(f"loopmon replay: {path}: {reader.end}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if not args.json:
        from loopmon.cli import window

        absent = window.missing()
        if absent:
            print(window.NO_GUI.format(missing=", ".join(absent)), file=sys.stderr)
            return 2
        if not window.has_display():
            print(
                f"loopmon replay: no display found; `loopmon replay --json {args.file}` "
                "prints the recording instead",
                file=sys.stderr,
            )
            return 2
        from loopmon.gui import app

        return app.run_replay(args)
    try:
        reader = RecordingReader(args.file)
    except RecordingError as exc:
        print(f"loopmon replay: {args.file}: {exc}", file=sys.stderr)
        return 1
    with reader:
        try:
            print_json(reader, sys.stdout, args.start)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader went away, which is fine
            # Python flushes stdout again at exit: point it where that cannot fail.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        _tell(args.file, reader)
    return 0
