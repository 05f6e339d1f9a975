"""Reading recordings back: ``RecordingReader(path)`` indexes a file (from its index record, or
by a scan of the record headers when it has none) and decodes its snapshots from any moment.

Damage is reported, never raised past the constructor: a file cut mid-record (a killed
producer) reads up to the cut and ``end`` says where it ends; a record whose CRC, compressed
data or frames are bad is skipped with the blocks after it up to the next keyframe block, and
each skip is told in ``problems``. Only a file that is not a recording, of a newer format, or
whose header is damaged raises ``RecordingError``, from the constructor.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, NamedTuple

from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.wire.codec import WireError
from loopmon.wire.frames import DELTA, HEADER, KEYFRAME, Frame
from loopmon.wire.recformat import (
    BLOCK,
    HELLO,
    INDEX,
    KINDS,
    MAX_HEADER,
    MAX_PAYLOAD,
    RECORD_HEADER,
    RECORD_MAGIC,
    TRAILER,
    TRAILER_MAGIC,
    BlockInfo,
    Header,
    Moment,
    RecordingError,
    check_record,
    decode_header,
    decode_hello,
    decode_index,
    read_block_prefix,
)
from loopmon.wire.snapshots import SnapshotDecoder

PROGRESS_EVERY: Final = 8 << 20  # bytes scanned between progress calls
RESYNC_CHUNK: Final = 1 << 20
_AT = struct.Struct("<d")

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class SnapshotAt(NamedTuple):
    at: float  # seconds since the recording began (the recorder's clock)
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Session:
    at: float  # where it starts on the recording's axis
    session: str
    producer: ProducerInfo | None  # its hello, when the file has it


class RecordingReader:
    def __init__(self, path: str | os.PathLike[str], progress: Progress | None = None) -> None:
        self.path = os.fspath(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise RecordingError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.header: Header = decode_header(self._file.read(MAX_HEADER))
            self.problems: list[str] = []
            self.blocks: list[BlockInfo] = []
            self.hellos: list[tuple[float, ProducerInfo]] = [(0.0, self.header.producer)]
            self.end = ""
            self._last_at = 0.0
            self.indexed = self._read_index()
            if not self.indexed:
                self._scan(progress)
        except BaseException:
            self._file.close()
            raise
        self._keys = [i for i, b in enumerate(self.blocks) if b.key]
        self._key_at = [self.blocks[i].first_at for i in self._keys]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it holds ---------------------------------------------------------------------------
    @property
    def producer(self) -> ProducerInfo:
        return self.header.producer

    @property
    def duration(self) -> float:
        return self.blocks[-1].last_at if self.blocks else 0.0

    @property
    def frames(self) -> int:
        return sum(b.count for b in self.blocks)

    @property
    def sessions(self) -> list[Session]:
        infos = {info.session: info for _, info in reversed(self.hellos)}
        out: list[Session] = []
        for b in self.blocks:
            if not out or out[-1].session != b.session:
                out.append(Session(b.first_at, b.session, infos.get(b.session)))
        return out

    @property
    def moments(self) -> list[Moment]:
        """Stalls, exceptions, listener and loop events and closes, in time order (each
        block lists the first few of each kind: enough to jump to)."""
        out = [m for b in self.blocks for m in b.moments]
        out.sort(key=lambda m: m.at)
        return out

    def next_moment(self, after: float, kinds: frozenset[str] | None = None) -> Moment | None:
        for m in self.moments:
            if m.at > after and (kinds is None or m.kind in kinds):
                return m
        return None

    # -- indexing ----------------------------------------------------------------------------------
    def _read_at(self, offset: int, n: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(n)

    def _read_index(self) -> bool:
        start = self.header.size
        if self.size < start + TRAILER.size + RECORD_HEADER.size:
            return False
        offset, magic = TRAILER.unpack(self._read_at(self.size - TRAILER.size, TRAILER.size))
        if magic != TRAILER_MAGIC or not start <= offset < self.size - TRAILER.size:
            return False
        record = self._read_record(offset, self.size - TRAILER.size)
        if record is None or record[0] != INDEX:
            return False
        try:
            blocks, closing = decode_index(record[1])
        except WireError:
            return False
        if any(b.offset < start or b.offset + b.size > offset for b in blocks):
            return False
        self.blocks = blocks
        self.hellos.extend(closing.hellos)
        self.end = f"the recording ends at {closing.at:.1f} s ({closing.reason})"
        return True

    def _header_at(self, offset: int, limit: int) -> tuple[int, int, int] | None:
        """(kind, payload length, crc) of a plausible record header at ``offset``."""
        raw = self._read_at(offset, RECORD_HEADER.size)
        if len(raw) < RECORD_HEADER.size:
            return None
        magic, kind, length, crc = RECORD_HEADER.unpack(raw)
        if magic != RECORD_MAGIC or kind not in KINDS or length > MAX_PAYLOAD:
            return None
        return kind, length, crc

    def _read_record(self, offset: int, limit: int) -> tuple[int, bytes] | None:
        """The record at ``offset`` if it is whole before ``limit`` and its CRC is right."""
        head = self._header_at(offset, limit)
        if head is None:
            return None
        kind, length, crc = head
        if offset + RECORD_HEADER.size + length > limit:
            return None
        payload = self._read_at(offset + RECORD_HEADER.size, length)
        if len(payload) != length or not check_record(kind, payload, crc):
            return None
        return kind, payload

    def _scan(self, progress: Progress | None) -> None:
        """Walk the records from the header on, checking each one's CRC."""
        pos: int | None = self.header.size
        reported = 0
        self._last_at = 0.0
        while pos is not None and pos < self.size:
            if progress is not None and pos - reported >= PROGRESS_EVERY:
                reported = pos
                progress(pos, self.size)
            pos = self._scan_one(pos)
        if progress is not None:
            progress(self.size, self.size)
        if not self.end:
            self.end = (
                f"the recording ends at {self._last_at:.1f} s, with no index (it was not "
                "closed: its producer was stopped or killed?)"
            )

    def _scan_one(self, pos: int) -> int | None:
        """Take the record at ``pos``: the offset of the next one, or None at the end."""
        size = self.size
        head = self._header_at(pos, size)
        if head is None:
            cut = size - pos < RECORD_HEADER.size and self._is_record_start(pos)
        else:
            # A record running past the end: the producer was killed while writing it,
            # unless a whole record starts inside it (then its length was damaged).
            cut = pos + RECORD_HEADER.size + head[1] > size
        record = None if head is None or cut else self._read_record(pos, size)
        if record is None:
            found = self._resync(pos + 1)
            if cut and found is None:
                self.end = (
                    f"the recording ends at {self._last_at:.1f} s: it is cut at byte {pos:,} "
                    f"of {size:,}, inside a record (its producer was killed mid-write?)"
                )
            else:
                self._damaged(pos, found)
            return found
        kind, payload = record
        stop = pos + RECORD_HEADER.size + len(payload)
        try:
            if kind == BLOCK:
                info, _ = read_block_prefix(payload, pos, stop - pos)
                self.blocks.append(info)
                self._last_at = info.last_at
            elif kind == HELLO:
                self.hellos.append(decode_hello(payload))
            else:
                # A clean close whose trailer is missing or damaged: the index ends the file.
                _, closing = decode_index(payload)
                self.end = f"the recording ends at {closing.at:.1f} s ({closing.reason})"
                return None
        except WireError:
            self._damaged(pos, stop)
        return stop

    def _is_record_start(self, pos: int) -> bool:
        tail = self._read_at(pos, RECORD_HEADER.size)
        return RECORD_MAGIC.startswith(tail[:4]) if tail else True

    def _damaged(self, start: int, stop: int | None) -> None:
        last_at = self._last_at
        if stop is None:
            self.problems.append(
                f"bytes {start:,} to the end ({self.size:,}) after {last_at:.1f} s are damaged: "
                "nothing more could be read"
            )
        else:
            self.problems.append(
                f"bytes {start:,} to {stop:,} after {last_at:.1f} s are damaged: skipped"
            )

    def _resync(self, pos: int) -> int | None:
        """The offset of the next whole record with a right CRC at or after ``pos``."""
        size = self.size
        while pos < size:
            chunk = self._read_at(pos, RESYNC_CHUNK + len(RECORD_MAGIC))
            if not chunk:
                return None
            i = chunk.find(RECORD_MAGIC)
            while i >= 0:
                if self._read_record(pos + i, size) is not None:
                    return pos + i
                i = chunk.find(RECORD_MAGIC, i + 1)
            pos += RESYNC_CHUNK
        return None

    # -- reading ---------------------------------------------------------------------------------
    def _frames(self, block: BlockInfo) -> Iterator[tuple[float, Frame]]:
        """The block's frames; ``WireError`` (after those read) if it is damaged."""
        record = self._read_record(block.offset, self.size)
        if record is None or record[0] != BLOCK:
            raise WireError("its CRC is wrong")
        _, start = read_block_prefix(record[1], block.offset, block.size)
        try:
            data = zlib.decompress(record[1][start:])
        except zlib.error as exc:
            raise WireError(f"its compressed data is bad ({exc})") from None
        pos = 0
        end = len(data)
        unpack_header = HEADER.unpack_from
        unpack_at = _AT.unpack_from
        while pos < end:
            if end - pos < 8 + HEADER.size:
                raise WireError("a frame cut short")
            (at,) = unpack_at(data, pos)
            length, kind = unpack_header(data, pos + 8)
            stop = pos + 12 + length
            if length < 1 or stop > end or kind not in (KEYFRAME, DELTA):
                raise WireError("a frame of a bad length or type")
            yield at, Frame(kind, data[pos + 13 : stop])
            pos = stop

    def snapshots(self, start: float = 0.0) -> Iterator[SnapshotAt]:
        """Every snapshot at or after ``start``, in order: decoding starts at the keyframe
        block before it. Damaged blocks are skipped (told in ``problems``) to the next
        keyframe block."""
        k = bisect.bisect_right(self._key_at, start) - 1
        first = self._keys[max(k, 0)] if self._keys else len(self.blocks)
        decoder = SnapshotDecoder()
        need_key = True
        skipping_from: float | None = None
        for block in self.blocks[first:]:
            if need_key and not block.key:
                if skipping_from is None:
                    skipping_from = block.first_at
                continue
            if skipping_from is not None:
                self._note(
                    f"skipped {skipping_from:.1f} s to {block.first_at:.1f} s: resumed at the "
                    "next keyframe"
                )
                skipping_from = None
            need_key = False
            try:
                for at, frame in self._frames(block):
                    snap = decoder.decode(frame)
                    if at >= start:
                        yield SnapshotAt(at, snap)
            except WireError as exc:
                self._note(
                    f"the block at byte {block.offset:,} ({block.first_at:.1f} s) is damaged: {exc}"
                )
                need_key = True
                skipping_from = block.first_at
                decoder.reset()
        if skipping_from is not None:
            self._note(f"skipped {skipping_from:.1f} s to the end: no keyframe after the damage")

    def _note(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)
