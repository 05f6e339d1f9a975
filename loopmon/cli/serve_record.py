"""``serve --record``: the recording of serve's snapshots, opened before its loop starts, fed on
the loop thread (through the publisher's own encoding when it streams too), written out every
second, and closed, or removed when nothing was served."""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from loopmon.ioloop import PeriodicCallback
from loopmon.runner import LoopRunner
from loopmon.snapshot import ProducerInfo
from loopmon.stream.publisher import Publisher
from loopmon.wire.recording import Recorder

__all__ = ["close_recording", "feed_recorder", "open_recorder"]


def open_recorder(
    args: argparse.Namespace, info: ProducerInfo, err: TextIO | None
) -> Recorder | None:
    """The recording file for ``--record``, created before the loop starts, so that a name
    taken is one line (``RecordingError``) and nothing served."""
    if getattr(args, "record", None) is None:
        return None

    def stopped(message: str) -> None:
        # On the loop thread; the server goes on.
        try:
            print(f"loopmon serve: {message}", file=err, flush=True)
        except (OSError, ValueError, AttributeError):
            pass

    return Recorder(
        args.record,
        info,
        force=args.force,
        max_bytes=args.record_max,
        writer_name="loopmon serve --record",
        on_stop=stopped,
    )


def close_recording(recorder: Recorder | None, served: bool) -> None:
    """Close it if the signal did not (the loop died); remove it if nothing was served (a
    listener could not start): a file of only a header is of use to no one."""
    if recorder is None:
        return
    recorder.close("the producer's loop stopped")  # a no-op after close_stream's
    if not served and recorder.frames == 0:
        try:
            os.unlink(recorder.path)
        except OSError:
            pass


def feed_recorder(recorder: Recorder, r: LoopRunner, publisher: Publisher | None) -> None:
    """Every snapshot to the recorder, on the loop thread: through the publisher's encoding
    when there is one (encoding is most of a recording's cost), and written out every second
    even when snapshots stop coming."""
    loop = r.loop
    assert loop is not None
    if publisher is not None:
        publisher.taps.append(recorder.record_encoded)
    else:
        r.snapshot_observers.append(recorder.record)
    PeriodicCallback(recorder.flush, 1000, io_loop=loop).start()
