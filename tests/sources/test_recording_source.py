"""The recording source plays a recording into its mailbox at the recorded pace times the
speed, pauses, seeks (bumping its generation) and jumps to the next notable moment; it takes
no commands. Driven by ``pump`` with a fake clock: no thread, no sleeps."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "wire"))
from test_recording import live, record, session

from loopmon.sources.recording import ReadOnly, RecordingSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def taken(source: RecordingSource) -> int | None:
    snap, _, _ = source.mailbox.take()
    return None if snap is None else snap.seq


@pytest.fixture
def source(tmp_path: Path) -> Iterator[RecordingSource]:
    record(tmp_path / "r", session(100))  # 100 snapshots 40 ms apart
    source = RecordingSource(tmp_path / "r", clock=Clock())
    yield source
    source.stop()
    source.mailbox.close()


def test_play_posts_at_the_recorded_pace_times_the_speed(source: RecordingSource) -> None:
    clock = source.clock
    assert isinstance(clock, Clock)
    assert source.pump(clock.now) is None  # not playing: the first snapshot shows
    assert taken(source) == 1
    source.play()
    due = source.pump(clock.now)
    assert due == pytest.approx(0.04)
    clock.now = 0.201
    source.pump(clock.now)
    assert taken(source) == 6 and source.position == pytest.approx(0.2)
    source.set_speed(4.0)
    clock.now += 0.1005  # 0.4 s more of recording at 4x
    source.pump(clock.now)
    assert taken(source) == 16
    source.pause()
    clock.now += 10
    assert source.pump(clock.now) is None and taken(source) is None
    source.play()
    clock.now += 100
    assert source.pump(clock.now) is None and source.finished
    assert taken(source) == 100


def test_every_snapshot_is_posted_as_the_stream_decoded_it(source: RecordingSource) -> None:
    got = []
    source.pump(0.0)
    got.append(source.mailbox.take()[0])
    source.play()
    for i in range(1, 100):
        source.pump(i * 0.04 + 1e-9)
        got.append(source.mailbox.take()[0])
    assert got == live(session(100))


def test_seek_and_jump(source: RecordingSource) -> None:
    source.pump(0.0)
    generation = source.generation
    source.seek(2.0)
    assert source.generation == generation + 1
    assert taken(source) == 51  # the snapshot recorded at 2.0 s
    moment = source.jump("stall")
    assert moment is not None and moment.kind == "stall" and moment.at > 2.0
    snap, _, _ = source.mailbox.take()
    assert snap is not None and any(e.kind == "stall" for e in snap.events)
    assert source.jump("listener") is None


def test_a_recording_takes_no_commands(source: RecordingSource) -> None:
    with pytest.raises(ReadOnly):
        source.close_connection(3).result()
    with pytest.raises(ReadOnly):
        source.start_listener("127.0.0.1", 0).result()
    assert source.stop()
