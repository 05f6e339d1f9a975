"""Recordings: what is recorded reads back as the live stream decoded it (through keyframes
or deltas alike); cut or corrupted files replay what they can and raise only RecordingError;
the file is private and never overwritten by accident; a slow or failing disk, or the size
limit, stops the recording without raising into the producer."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopmon.cli.jsonout import snapshot_object
from loopmon.cli.replay import print_json
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LoopEvent,
    ProducerInfo,
    Snapshot,
)
from loopmon.wire import SnapshotDecoder, SnapshotEncoder
from loopmon.wire.frames import TO_CONSUMER_MAX, FrameReader
from loopmon.wire.recformat import FILE_MAGIC
from loopmon.wire.recording import Recorder, RecordingError, RecordingReader

INFO = ProducerInfo("serve", "loopmon serve", 42, "epoll", "s", 1_700_000_000.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row(i: int, **changes: object) -> ConnectionRow:
    base = ConnectionRow(
        fd=i + 5, peer=f"127.0.0.1:{40000 + i}", listener_id=1, state="open", mask=0x19,
        read_fraction=1.0, write_fraction=0.0, id=i, local="127.0.0.1:10000",
    )  # fmt: skip
    return base._replace(**changes)  # type: ignore[arg-type]


def session(n: int, conns: int = 6, session: str = "s") -> list[Snapshot]:
    """A little echo server's life: rows that grow, one that closes, a stall now and then."""
    rows = [row(i) for i in range(1, conns + 1)]
    out = []
    for seq in range(1, n + 1):
        rows = [r._replace(bytes_in=(r.bytes_in or 0) + seq * r.id) for r in rows]
        closed: tuple[ClosedConnection, ...] = ()
        events: tuple[LoopEvent, ...] = ()
        if seq % 7 == 0 and rows:
            gone = rows.pop(0)
            closed = (ClosedConnection(gone, seq / 25, "peer closed"),)
            rows.append(row(100 + seq))
        if seq % 11 == 0:
            events = (LoopEvent(seq / 25, "stall", "a callback ran 120 ms", detail="stack"),)
        out.append(
            Snapshot(
                seq,
                seq / 25,
                "epoll",
                "direct",
                uptime_s=seq / 25,
                session=session,
                connections=tuple(rows),
                closed=closed,
                events=events,
            )
        )
    return out


def live(snaps: list[Snapshot]) -> list[Snapshot]:
    """What a consumer of the stream decodes from them."""
    enc, dec = SnapshotEncoder(), SnapshotDecoder()
    out = []
    for s in snaps:
        e = enc.encode(s)
        [f] = FrameReader(TO_CONSUMER_MAX).feed(e.keyframe() if e.delta is None else e.delta)
        out.append(dec.decode(f))
    return out


def record(path: Path, snaps: list[Snapshot], step: float = 0.04, **kw: object) -> Recorder:
    clock = Clock()
    rec = Recorder(path, INFO, clock=clock, **kw)  # type: ignore[arg-type]
    for s in snaps:
        rec.record(s)
        clock.now += step
    rec.close()
    return rec


OPEN: list[RecordingReader] = []


def open_reader(path: Path, **kw: object) -> RecordingReader:
    """A reader closed at the end of the test (the fd table is left as it was found: a
    later test counts on its holes)."""
    reader = RecordingReader(path, **kw)  # type: ignore[arg-type]
    OPEN.append(reader)
    return reader


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def read_all(path: Path, start: float = 0.0) -> tuple[RecordingReader, list[Snapshot]]:
    """Every snapshot from ``start``, and the reader (closed: its findings stay readable)."""
    with RecordingReader(path) as reader:
        return reader, [item.snapshot for item in reader.snapshots(start)]


def test_a_recording_reads_back_as_the_stream_decodes_it(tmp_path: Path) -> None:
    snaps = session(300)
    rec = record(tmp_path / "r", snaps)
    assert not rec.stopped and rec.keyframes > 1
    reader, got = read_all(tmp_path / "r")
    assert got == live(snaps)
    assert reader.indexed and reader.problems == []
    assert reader.duration == pytest.approx(299 * 0.04)
    assert [s.session for s in reader.sessions] == ["s"]
    assert reader.producer == INFO
    # What replay --json prints is what attach --json printed live.
    out = io.StringIO()
    print_json(open_reader(tmp_path / "r"), out)
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed == [json.loads(json.dumps(snapshot_object(s))) for s in live(snaps)]


def test_seeking_reaches_the_same_values_through_a_keyframe_as_through_deltas(
    tmp_path: Path,
) -> None:
    snaps = session(400)
    record(tmp_path / "r", snaps)
    _, everything = read_all(tmp_path / "r")
    stamps = [item.at for item in open_reader(tmp_path / "r").snapshots()]
    for start in (0.0, 3.3, 7.77, 11.0, 15.9):
        _, got = read_all(tmp_path / "r", start)
        first = next(i for i, at in enumerate(stamps) if at >= start)
        assert got == everything[first:]


def test_keyframes_come_when_the_deltas_outgrow_the_last_one_or_every_minute(
    tmp_path: Path,
) -> None:
    # Nothing changes in 5,000 rows: the empty deltas (~150 bytes) would take 100 s to
    # outgrow their keyframe, so the minute forces them (the first, then one a minute).
    first = session(1, conns=5000)[0]
    quiet = [dataclasses.replace(first, seq=i, taken_at=i / 5) for i in range(1, 601)]
    assert record(tmp_path / "quiet", quiet, step=0.2).keyframes == 2
    # Everything changes: the deltas outgrow the keyframe within a few frames.
    busy = record(tmp_path / "busy", session(100, conns=50))
    assert busy.keyframes > 10


def test_notable_moments_are_listed_for_jumps(tmp_path: Path) -> None:
    record(tmp_path / "r", session(100))
    reader = open_reader(tmp_path / "r")
    kinds = {m.kind for m in reader.moments}
    assert kinds == {"stall", "close"}
    stall = reader.next_moment(0.0, frozenset({"stall"}))
    assert stall is not None and stall.text == "a callback ran 120 ms"
    later = reader.next_moment(stall.at, frozenset({"stall"}))
    assert later is not None and later.at > stall.at


def test_a_restarted_producer_is_a_new_session(tmp_path: Path) -> None:
    clock = Clock()
    rec = Recorder(tmp_path / "r", INFO, clock=clock)
    for s in session(30, session="one"):
        rec.record(s)
        clock.now += 0.04
    rec.hello(dataclasses.replace(INFO, session="two", pid=43))
    for s in session(30, session="two"):
        rec.record(s)
        clock.now += 0.04
    rec.close()
    for reader in (open_reader(tmp_path / "r"), _unindexed(tmp_path / "r")):
        sessions = reader.sessions
        assert [s.session for s in sessions] == ["one", "two"]
        assert sessions[1].producer is not None and sessions[1].producer.pid == 43
        assert len(list(reader.snapshots())) == 60


def _unindexed(path: Path) -> RecordingReader:
    """The file as a killed producer leaves it: no index."""
    data = path.read_bytes()
    cut = path.with_suffix(".cut")
    reader = open_reader(path)
    end = reader.blocks[-1].offset + reader.blocks[-1].size
    cut.write_bytes(data[:end])
    out = open_reader(cut)
    assert not out.indexed
    return out


def test_without_an_index_a_scan_finds_the_same(tmp_path: Path) -> None:
    snaps = session(200)
    record(tmp_path / "r", snaps)
    reader = _unindexed(tmp_path / "r")
    assert [i.snapshot for i in reader.snapshots()] == live(snaps)
    assert reader.blocks == open_reader(tmp_path / "r").blocks
    assert "no index" in reader.end


def test_a_cut_at_every_byte_replays_a_prefix_or_is_one_error(tmp_path: Path) -> None:
    snaps = session(40, conns=3)
    record(tmp_path / "r", snaps)
    data = (tmp_path / "r").read_bytes()
    expected = live(snaps)
    cut = tmp_path / "cut"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        try:
            reader, got = read_all(cut)
        except RecordingError:
            assert n < 200  # only a cut inside the header is no recording at all
            continue
        assert got == expected[: len(got)]
        assert reader.end
        if len(got) < len(expected):
            assert "ends at" in reader.end


# No deadline: each example writes and reads a file, and on a loaded machine (a nice'd CI beside
# other work) one took 257 ms, past hypothesis's 200 ms, a failure that says nothing.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_corrupt_bytes_skip_to_the_next_keyframe(tmp_path: Path, data: st.DataObject) -> None:
    snaps = session(150, conns=20)
    path = tmp_path / "r"
    if not path.exists():
        record(path, snaps)
    raw = bytearray(path.read_bytes())
    reader = open_reader(path)
    header = reader.header.size
    where = data.draw(st.integers(header, len(raw) - 1))
    raw[where] ^= data.draw(st.integers(1, 255))
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(raw))
    damaged, got = read_all(bad)
    expected = live(snaps)
    # Every snapshot read is one recorded, in order; what is missing is told.
    by_seq = {s.seq: s for s in expected}
    assert all(by_seq[s.seq] == s for s in got)
    assert [s.seq for s in got] == sorted(s.seq for s in got)
    if len(got) < len(expected):
        assert damaged.problems
    # The damage costs at most the keyframe group it hit (and the one before the group
    # when the hit header's length sent the scan astray): most of the file still plays.
    assert len(got) >= len(expected) - 60


def test_not_a_recording_or_a_newer_one_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "r"
    path.write_bytes(b"hello, world\n")
    with pytest.raises(RecordingError, match="not a loopmon recording"):
        open_reader(path)
    path.write_bytes(FILE_MAGIC + b"\x02" + bytes(40))
    with pytest.raises(RecordingError, match="version 2, newer than"):
        open_reader(path)
    with pytest.raises(RecordingError, match="cannot open"):
        open_reader(tmp_path / "absent")


def test_the_file_is_private_and_never_replaced_without_force(tmp_path: Path) -> None:
    path = tmp_path / "r"
    record(path, session(3))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(RecordingError, match=r"exists.*--force"):
        Recorder(path, INFO)
    assert path.read_bytes() == before
    path.chmod(0o644)
    record(path, session(9), force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(read_all(path)[1]) == 9


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    link = tmp_path / "link"
    link.symlink_to(target)
    for force in (False, True):
        with pytest.raises(RecordingError):
            Recorder(link, INFO, force=force)
    assert target.read_text() == "precious"


def test_the_size_limit_stops_the_recording_with_a_message(tmp_path: Path) -> None:
    stops: list[str] = []
    rec = record(tmp_path / "r", session(500, conns=30), max_bytes=20_000, on_stop=stops.append)
    assert rec.stopped and stops == [rec.message] and "size limit" in rec.message
    reader, got = read_all(tmp_path / "r")
    assert got and got == live(session(500, conns=30))[: len(got)]
    last_block = reader.blocks[-1]
    assert last_block.offset + last_block.size <= 20_000
    assert "size limit" in reader.end


def test_a_slow_write_stops_the_recording_never_the_producer(tmp_path: Path) -> None:
    clock = Clock()
    slow = {"on": False}

    def writer(fd: int, data: memoryview) -> int:
        if slow["on"]:
            clock.now += 0.08  # the disk takes 80 ms
        return os.write(fd, data)

    rec = Recorder(tmp_path / "r", INFO, clock=clock, writer=writer)
    snaps = session(200)
    for i, s in enumerate(snaps):
        slow["on"] = i >= 100
        rec.record(s)
        clock.now += 0.04
    rec.close()
    assert rec.stopped and "took 80 ms" in rec.message
    _, got = read_all(tmp_path / "r")
    assert 90 <= len(got) < 200 and got == live(snaps)[: len(got)]


def test_a_failing_write_stops_the_recording_never_the_producer(tmp_path: Path) -> None:
    clock = Clock()
    full = {"on": False}

    def writer(fd: int, data: memoryview) -> int:
        if full["on"]:
            raise OSError(28, os.strerror(28))
        return os.write(fd, data)

    stops: list[str] = []
    rec = Recorder(tmp_path / "r", INFO, clock=clock, writer=writer, on_stop=stops.append)
    snaps = session(100)
    for i, s in enumerate(snaps):
        full["on"] = i >= 60
        rec.record(s)
        clock.now += 0.04
    rec.close()
    assert stops == [rec.message] and "no space left on device" in rec.message
    _, got = read_all(tmp_path / "r")
    assert 30 <= len(got) <= 60 and got == live(snaps)[: len(got)]


def test_a_crash_loses_at_most_about_a_second(tmp_path: Path) -> None:
    clock = Clock()
    rec = Recorder(tmp_path / "r", INFO, clock=clock)
    snaps = session(100)
    for s in snaps:
        rec.record(s)
        clock.now += 0.04
    # Killed now: no close. What is on disk is all but the last second or so.
    _, got = read_all(tmp_path / "r")
    assert len(got) >= 100 - 26
    rec.close()


def test_a_snapshot_that_cannot_be_encoded_stops_the_recording(tmp_path: Path) -> None:
    clock = Clock()
    rec = Recorder(tmp_path / "r", INFO, clock=clock)
    rec.record(session(1)[0])
    rec.record(dataclasses.replace(session(2)[1], connections=(row(1, fd="x"),)))
    assert rec.stopped and "recording stopped" in rec.message
    rec.close()
    assert len(read_all(tmp_path / "r")[1]) == 1


def test_snapshots_encoded_elsewhere_record_the_same(tmp_path: Path) -> None:
    # The publisher's encoder, shared: what it makes goes to the recorder as it is.
    snaps = session(200)
    encoder = SnapshotEncoder()
    clock = Clock()
    rec = Recorder(tmp_path / "r", INFO, clock=clock)
    for i, s in enumerate(snaps):
        if i == 120:
            encoder.reset()  # a consumer attached: the publisher restarted its encoder
        rec.record_encoded(encoder.encode(s))
        clock.now += 0.04
    rec.close()
    assert read_all(tmp_path / "r")[1] == live(snaps)


def test_a_snapshot_that_absorbed_lost_frames_is_recorded_with_every_close(
    tmp_path: Path,
) -> None:
    """What attach decodes after losing frames (a catch-up keyframe listing the lost frames'
    closes, up to the publisher's bound) or what a mailbox carried over a slow reader, is
    recorded as decoded: a recording made by attach replays what attach printed."""
    from loopmon.mailbox import MAX_CARRIED_CLOSES
    from loopmon.stream.publisher import MAX_MISSED_CLOSES
    from loopmon.wire.closes import CLOSED_PER_FRAME

    many = tuple(
        ClosedConnection(row(1000 + i, state="closed"), 1.0 + i / 1e4, "peer closed")
        for i in range(MAX_MISSED_CLOSES)
    )
    snaps = session(3)
    snaps[1] = dataclasses.replace(snaps[1], closed=many, closed_omitted=2)
    record(tmp_path / "r", snaps)
    _, got = read_all(tmp_path / "r")
    assert got[1].closed == many and got[1].closed_omitted == 2
    assert MAX_CARRIED_CLOSES == MAX_MISSED_CLOSES <= CLOSED_PER_FRAME
