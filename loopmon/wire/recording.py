"""Recording: a producer's snapshots, as the stream's frames, in a file (docs/recording.md).

``Recorder`` is called on the producer's own thread (``serve``'s loop, ``attach``'s client
thread): ``record(snapshot)`` encodes the snapshot with the recorder's own
``SnapshotEncoder``, feeds the frame to the open block's compressor, and writes the block out
(one write(2)) once it holds a second of frames, before a keyframe, or at ``flush``/``close``.
Nothing here raises into the producer: a write that fails (a full disk), one that takes over
``SLOW_WRITE_S``, a snapshot that cannot be encoded, or reaching ``max_bytes``, stops the
recording, sets ``stopped`` and ``message`` and calls ``on_stop(message)`` once; the file then
holds everything up to the last block written, and ``close`` still writes the index if it can.

Keyframes: the first snapshot of a session, then whenever the deltas written since the last
keyframe add up to more than its size on disk, compressed (reading from a keyframe then never
reads much more than twice a keyframe), or ``KEYFRAME_EVERY_S`` has passed.

``RecordingReader`` (``loopmon.wire.playback``) reads the files back; both are exported here.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from typing import Final

from loopmon.netaddr import describe_error
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.wire.playback import RecordingReader, SnapshotAt
from loopmon.wire.recformat import (
    BLOCK,
    HELLO,
    INDEX,
    KEY,
    MOMENTS_PER_KIND,
    NOTABLE,
    TRAILER,
    TRAILER_MAGIC,
    BlockInfo,
    Closing,
    Moment,
    RecordingError,
    block_prefix,
    encode_header,
    encode_hello,
    encode_index,
    encode_record,
)
from loopmon.wire.snapshots import Encoded, SnapshotEncoder

__all__ = ["Moment", "Recorder", "RecordingError", "RecordingReader", "SnapshotAt", "create_file"]

BLOCK_S: Final = 1.0  # a block is written out at least this often: a crash loses about this
BLOCK_BYTES: Final = 4 << 20  # or once it holds this much (uncompressed)
KEYFRAME_EVERY_S: Final = 60.0
SLOW_WRITE_S: Final = 0.05
LEVEL: Final = 1  # zlib level: 6 is < 1 % smaller on these frames and ~50 % more CPU (measured)
FILE_MODE: Final = 0o600

Writer = Callable[[int, memoryview], int]
_AT = struct.Struct("<d")


def create_file(path: str, force: bool) -> int:
    """A recording's file, opened for writing: mode 0600, no symlink followed, and no
    overwrite without ``force``; the reason in the user's words when it cannot be."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_TRUNC if force else os.O_EXCL
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        raise RecordingError(
            f"{path} exists: choose another name, or --force to replace it"
        ) from None
    except OSError as exc:
        raise RecordingError(f"cannot create {path}: {describe_error(exc)}") from None
    if force:
        os.fchmod(fd, FILE_MODE)  # a replaced file keeps its old mode otherwise
    return fd


def _write_all(fd: int, data: bytes, write: Writer) -> None:
    view = memoryview(data)
    while view:
        view = view[write(fd, view) :]


class Recorder:
    """Writes snapshots to a new file at ``path`` (mode 0600, never through a symlink; an
    existing file is an error unless ``force``, which replaces it). The constructor raises
    ``RecordingError`` (one line) if the file cannot be created; after that nothing raises."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        producer_info: ProducerInfo,
        *,
        force: bool = False,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        writer: Writer = os.write,
        writer_name: str = "loopmon",
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self._clock = clock
        self._write = writer
        self.on_stop = on_stop
        self.stopped = False
        self.message = ""
        self.closed = False
        self.frames = 0  # snapshots recorded
        self.keyframes = 0
        self.written = 0  # bytes in the file
        self.slowest_write_s = 0.0
        self._fd = create_file(self.path, force)
        self._encoder = SnapshotEncoder()
        self._start = clock()
        self._blocks: list[BlockInfo] = []
        self._hellos: list[tuple[float, ProducerInfo]] = []
        # The keyframe rule compares bytes on disk: the keyframe's compressed size (known
        # exactly: the compressor is sync-flushed after it) against the deltas' since, each
        # estimated from its raw size at the last block's ratio (measured: comparing raw
        # sizes makes 55 % more keyframes at 25 Hz, 7.5 rather than 6.0 B a changed row).
        self._since_key = 0.0
        self._key_size = 0
        self._ratio = 0.6
        self._key_at = 0.0
        self._session: str | None = None
        self._reset_block()
        self._put(encode_header(producer_info, wall_clock(), writer_name))

    # -- the producer's calls ---------------------------------------------------------------
    def record(self, snapshot: Snapshot) -> None:
        """Add one snapshot (every one, in order). Never raises."""
        self._take(snapshot, None)

    def record_encoded(self, encoded: Encoded) -> None:
        """Add a snapshot another encoder already encoded (the publisher's, say: encoding is
        most of a recording's cost; measured, 1.9 ms of 2.0 a frame at 1,000 busy rows). Only
        if the recorder gets every ``Encoded`` that encoder makes, in order, so each delta
        applies to the frame before it; then never mix with ``record``. Never raises."""
        self._take(encoded.snapshot, encoded)

    def _take(self, snapshot: Snapshot, encoded: Encoded | None) -> None:
        if self.stopped or self.closed:
            return
        try:
            self._record(snapshot, encoded)
        except Exception as exc:  # the producer goes on whatever happens here
            message = f"recording stopped: {type(exc).__name__}: {exc}"
            try:
                self.flush()  # what was recorded before it is kept
            except Exception:  # the message below says what went wrong
                pass
            self._stop(message)

    def hello(self, producer_info: ProducerInfo) -> None:
        """A new producer from here on (``attach`` saw the producer restart)."""
        if self.stopped or self.closed:
            return
        try:
            self.flush()
            at = self._clock() - self._start
            if self._put_record(HELLO, encode_hello(producer_info, at)):
                self._hellos.append((at, producer_info))
        except Exception as exc:
            self._stop(f"recording stopped: {type(exc).__name__}: {exc}")

    def flush(self) -> None:
        """Write the open block out now (``record`` does at least every second)."""
        if self._count and not self.stopped:
            self._finish_block()

    def close(self, reason: str = "closed") -> None:
        """Write what is buffered, the index and the trailer, and close the file."""
        if self.closed:
            return
        try:
            if not self.stopped:
                self.flush()
            why = self.message or reason
            if not (self.stopped and self.message.startswith("recording stopped: a write")):
                closing = Closing(self._clock() - self._start, why, tuple(self._hellos))
                offset = self.written
                self._put_record(INDEX, encode_index(self._blocks, closing), force=True)
                self._put(TRAILER.pack(offset, TRAILER_MAGIC), force=True)
        except Exception as exc:
            if not self.stopped:
                self._stop(f"recording stopped: {type(exc).__name__}: {exc}")
        finally:
            self.closed = True
            os.close(self._fd)

    @property
    def duration(self) -> float:
        return self._last_at

    # -- inside --------------------------------------------------------------------------------
    def _reset_block(self) -> None:
        self._compressor = zlib.compressobj(LEVEL)
        self._chunks: list[bytes] = []
        self._count = 0
        self._raw = 0
        self._flags = 0
        self._first_at = 0.0
        self._last_at = getattr(self, "_last_at", 0.0)
        self._block_started = 0.0
        self._block_session = ""
        self._key_raw = 0  # the block's keyframe, raw and compressed
        self._key_packed = 0
        self._moments: list[Moment] = []
        self._kinds: dict[str, int] = {}

    def _record(self, snap: Snapshot, encoded: Encoded | None) -> None:
        now = self._clock()
        at = now - self._start
        if encoded is None:
            encoded = self._encoder.encode(snap)
        key = (
            encoded.delta is None
            or snap.session != self._session
            or self._since_key + len(encoded.delta) * self._ratio > self._key_size
            or at - self._key_at >= KEYFRAME_EVERY_S
        )
        if key:
            frame = encoded.keyframe()
            if self._count:
                self._finish_block()
                if self.stopped:
                    return
            self._flags = KEY
            self._since_key = 0.0
            self._key_at = at
            self.keyframes += 1
        else:
            assert encoded.delta is not None
            frame = encoded.delta
            self._since_key += len(frame) * self._ratio
        self._session = snap.session
        if not self._count:
            self._first_at = at
            self._block_started = now
            self._block_session = snap.session
        self._last_at = at
        self._count += 1
        self._raw += len(frame) + 8
        self._note_moments(snap, at)
        chunk = self._compressor.compress(_AT.pack(at) + frame)
        if key:
            chunk += self._compressor.flush(zlib.Z_SYNC_FLUSH)
            self._key_size = self._key_packed = len(chunk)
            self._key_raw = len(frame) + 8
        self._chunks.append(chunk)
        self.frames += 1
        if now - self._block_started >= BLOCK_S or self._raw >= BLOCK_BYTES:
            self._finish_block()

    def _note_moments(self, snap: Snapshot, at: float) -> None:
        kinds = self._kinds
        for event in snap.events:
            if event.kind in NOTABLE:
                n = kinds.get(event.kind, 0)
                kinds[event.kind] = n + 1
                if n < MOMENTS_PER_KIND:
                    when = at - max(snap.taken_at - event.at, 0.0)
                    self._moments.append(Moment(max(when, 0.0), event.kind, event.text))
        if snap.closed:
            n = kinds.get("closed", 0)
            for closed in snap.closed[: max(MOMENTS_PER_KIND - n, 0)]:
                when = max(at - max(snap.taken_at - closed.closed_at, 0.0), 0.0)
                row = closed.row
                text = f"connection {row.id} ({row.peer or 'fd ' + str(row.fd)}): {closed.reason}"
                self._moments.append(Moment(when, "close", text))
            kinds["closed"] = n + len(snap.closed)

    def _finish_block(self) -> None:
        body = b"".join(self._chunks) + self._compressor.flush()
        raw_deltas = self._raw - self._key_raw
        if raw_deltas >= 1024:
            self._ratio = min(max((len(body) - self._key_packed) / raw_deltas, 0.05), 1.5)
        moments = sorted(self._moments, key=lambda m: m.at)
        payload = (
            block_prefix(
                self._flags,
                self._count,
                self._first_at,
                self._last_at,
                self._block_session,
                moments,
            )
            + body
        )
        offset = self.written
        size = self._put_record(BLOCK, payload)
        if size:
            self._blocks.append(
                BlockInfo(
                    offset,
                    size,
                    self._flags,
                    self._count,
                    self._first_at,
                    self._last_at,
                    self._block_session,
                    tuple(moments),
                )
            )
        self._reset_block()

    def _put_record(self, kind: int, payload: bytes | bytearray, force: bool = False) -> int:
        record = encode_record(kind, payload)
        return len(record) if self._put(record, force) else 0

    def _put(self, data: bytes, force: bool = False) -> bool:
        """Write ``data`` whole; False (and the recording stopped) if it cannot be."""
        if self.stopped and not force:
            return False
        limit = self.max_bytes
        if not force and limit is not None and self.written + len(data) > limit:
            self._stop(
                f"recording stopped at its size limit ({limit:,} bytes): "
                f"{self._last_at:.1f} s recorded in {self.path}"
            )
            return False
        started = self._clock()
        try:
            _write_all(self._fd, data, self._write)
        except OSError as exc:
            self._stop(f"recording stopped: a write failed ({describe_error(exc)}) at {self.path}")
            return False
        took = self._clock() - started
        self.written += len(data)
        self.slowest_write_s = max(self.slowest_write_s, took)
        if took > SLOW_WRITE_S and not force:
            self._stop(
                f"recording stopped: a write took {took * 1e3:.0f} ms (over "
                f"{SLOW_WRITE_S * 1e3:.0f}): the disk is too slow for {self.path}"
            )
        return True

    def _stop(self, message: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.message = message
        if self.on_stop is not None:
            try:
                self.on_stop(message)
            except Exception:  # a callback's failure must not reach the producer either
                pass
