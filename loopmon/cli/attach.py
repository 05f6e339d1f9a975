"""``loopmon attach [--json] HOST:PORT``: a consumer of a producer's telemetry stream (``serve
--telemetry``, ``run --telemetry``).

The token: ``--token-file PATH`` or ``LOOPMON_TOKEN`` when given, else, for a producer on this
machine, its own token file, found by the port (files of dead pids are skipped); never a token
on the command line, where ``ps`` would show it. It is looked up again before each reconnection:
a restarted producer has a new token, and a new file.

``--json`` prints one JSON object per snapshot delivered (``cli.jsonout``), a line each,
flushed: every snapshot the client decodes is printed (they come through ``on_snapshot``, not a
mailbox that keeps only the latest, so no closed connection is lost between two objects); a
reader slower than the stream blocks the client, and the producer drops frames for it, counted
in ``dropped_frames``. It exits 0 after ``--count`` objects, on Ctrl-C, or when stdout is
closed (``| head -1``); 1 with one line on stderr when it cannot connect within ``--wait``
seconds or the producer refuses it (a wrong token, a newer protocol, not a loopmon stream).
Without ``--json`` it opens the window on the stream.

``--record FILE`` (either mode) writes every snapshot decoded to a new file: the name is
taken (created empty, mode 0600) before connecting, so a file that exists is one line and exit
status 2 unless ``--force``; the recording's header is written at the first snapshot (it holds
the producer's hello), a restarted producer is a hello record, and what is buffered is written
out every second even while the producer sends nothing. A recording that stops by itself
(``--record-max``, a slow or failed write) is one line on stderr; attach goes on.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

from loopmon.cli import window
from loopmon.cli.args import add_record_arguments, positive_float, positive_int, record_refusal
from loopmon.cli.jsonout import snapshot_object
from loopmon.netaddr import format_address, is_loopback, split_address
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.stream import tokens
from loopmon.stream.client import FAILED, Client, TokenSource
from loopmon.wire.recording import Recorder, RecordingError, create_file

__all__ = ["add_arguments", "run"]

DEFAULT_WAIT_S = 10.0
NO_WINDOW = "loopmon: the attached window is not in this build"


def producer_address(text: str) -> tuple[str, int]:
    try:
        host, port = split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 names no producer: {text!r}")
    return host, port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "address",
        type=producer_address,
        metavar="HOST:PORT",
        help="the producer's telemetry address, as it printed it ([::1]:PORT for IPv6)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per snapshot, no window"
    )
    parser.add_argument(
        "--count", type=positive_int, default=None, metavar="N", help="stop after N objects"
    )
    parser.add_argument(
        "--wait",
        type=positive_float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="give up (exit 1) if not connected within this long (%(default)g)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the producer's token file (default: ${tokens.ENV_VAR}, else the file of a "
        "producer on this machine)",
    )
    add_record_arguments(parser)


def run(args: argparse.Namespace) -> int:
    host, port = args.address
    refusal = record_refusal(args)
    if refusal is not None:
        print(f"loopmon attach: {refusal}", file=sys.stderr)
        return 2
    token = functools.partial(
        tokens.consumer_token,
        port,
        str(args.token_file) if args.token_file else None,
        is_loopback(host),
    )
    try:
        token()  # none now is one line; later (a restarted producer's) the client retries
    except tokens.TokenError as exc:
        print(f"loopmon attach: {exc}", file=sys.stderr)
        return 1
    recording = None
    if args.record is not None:
        writer = "loopmon attach --json --record" if args.json else "loopmon attach --record"
        try:
            recording = AttachRecording(args.record, args.force, args.record_max, writer)
        except RecordingError as exc:
            print(f"loopmon attach: {exc}", file=sys.stderr)
            return 2
    try:
        if not args.json:
            if recording is not None:
                args.record_tap = recording.take
            return open_window(args, token)
        return print_json(host, port, token, args.count, args.wait, sys.stdout, recording)
    finally:
        if recording is not None:
            recording.close()


def reserve(path: str, force: bool) -> None:
    """Take the name now, as the recorder would: the header that the recorder writes needs
    the producer's hello."""
    os.close(create_file(path, force))


class AttachRecording:
    """attach's recording: the name reserved at once, the ``Recorder`` made at the first
    snapshot, a hello record for each new producer session; written out every second by a
    thread of its own (the client's thread may sit waiting on a silent producer), hence
    the lock."""

    def __init__(
        self,
        path: str,
        force: bool,
        max_bytes: int | None,
        writer_name: str,
        err: TextIO | None = None,
    ) -> None:
        reserve(path, force)
        self.path = path
        self.max_bytes = max_bytes
        self.writer_name = writer_name
        self.err = err or sys.stderr
        self.recorder: Recorder | None = None
        self._session = ""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every_second, name="loopmon-attach-record", daemon=True
        )
        self._flusher.start()

    def take(self, snap: Snapshot, producer: ProducerInfo | None) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            recorder = self.recorder
            if recorder is None:
                if producer is None:
                    return
                try:
                    # The name is ours (reserved above): replacing it is the point.
                    recorder = Recorder(
                        self.path,
                        producer,
                        force=True,
                        max_bytes=self.max_bytes,
                        writer_name=self.writer_name,
                        on_stop=self._stopped,
                    )
                except RecordingError as exc:
                    self._stopped(f"recording stopped: {exc}")
                    self._closed.set()
                    return
                self.recorder = recorder
                self._session = producer.session
            elif producer is not None and producer.session != self._session:
                self._session = producer.session
                recorder.hello(producer)
            recorder.record(snap)

    def _stopped(self, message: str) -> None:
        try:
            print(f"loopmon attach: {message}", file=self.err, flush=True)
        except (OSError, ValueError, AttributeError):
            pass

    def _flush_every_second(self) -> None:
        while not self._closed.wait(1.0):
            with self._lock:
                if self.recorder is not None:
                    self.recorder.flush()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self.recorder is not None:
                self.recorder.close()
            else:
                try:  # nothing came: leave no empty file behind
                    os.unlink(self.path)
                except OSError:
                    pass
        self._flusher.join(2.0)


def open_window(args: argparse.Namespace, token: bytes | TokenSource) -> int:
    absent = window.missing()
    if absent:
        print(window.NO_GUI.format(missing=", ".join(absent)), file=sys.stderr)
        return 2
    if not window.has_display():
        print(window.NO_DISPLAY.format(command=window.this_command()), file=sys.stderr)
        return 2
    try:
        from loopmon.gui.app import run_attached  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        print(NO_WINDOW, file=sys.stderr)
        return 2
    args.token = token
    code: int = run_attached(args)
    return code


class _Printer:
    """Prints each snapshot on the client's thread, as it is decoded."""

    def __init__(
        self,
        client: Client,
        out: TextIO,
        count: int | None,
        recording: AttachRecording | None = None,
    ) -> None:
        self.client = client
        self.recording = recording
        self.out = out
        self.count = count
        self.printed = 0
        self.done = threading.Event()
        self.broken = False
        self._previous: Snapshot | None = None
        self._dropped = 0

    def __call__(self, snap: Snapshot) -> None:
        if self.done.is_set():
            return
        if self.recording is not None:
            self.recording.take(snap, self.client.producer)
        dropped = self.client.dropped_frames
        obj = snapshot_object(snap, dropped_frames=dropped - self._dropped, previous=self._previous)
        self._dropped = dropped
        self._previous = snap
        try:
            self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            self.broken = True  # `| head -1`: the reader has what it wanted
            self.done.set()
            return
        self.printed += 1
        if self.count is not None and self.printed >= self.count:
            self.done.set()

    def on_status(self, status: str, error: str) -> None:
        if status == FAILED:
            self.done.set()


def print_json(
    host: str,
    port: int,
    token: bytes | TokenSource,
    count: int | None,
    wait: float,
    out: TextIO,
    recording: AttachRecording | None = None,
) -> int:
    address = format_address(host, port)
    client = Client(host, port, token, client="loopmon attach --json", connect_timeout=wait)
    printer = _Printer(client, out, count, recording)
    client.on_snapshot = printer
    client.on_status = printer.on_status
    client.start()
    try:
        if not client.wait_connected(wait):
            if client.status == FAILED:
                reason = client.error
            elif client.error:
                reason = f"{client.error} (gave up after {wait:g} s)"
            else:
                reason = f"no answer from {address} within {wait:g} s"
            print(f"loopmon attach: {reason}", file=sys.stderr)
            return 1
        while not printer.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        return 0
    finally:
        client.stop()
        if printer.broken:
            _quiet_stdout(out)
    if client.status == FAILED and not printer.broken:
        print(f"loopmon attach: {client.error}", file=sys.stderr)
        return 1
    return 0


def _quiet_stdout(out: TextIO) -> None:
    """stdout's reader is gone: point the fd at /dev/null so the interpreter's last flush
    raises nothing (as Python's docs advise for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
