"""loopmon replay --json: the objects attach --json prints, one a line; a bad file is one line
and status 1; a damaged one prints what it can and says on stderr what it skipped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "wire"))
from test_recording import _close_readers, live, open_reader, record, session

from loopmon.cli import main
from loopmon.cli.jsonout import snapshot_object

__all__ = ["_close_readers"]  # the fixture, imported to close the readers opened here


def test_replay_json_prints_every_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record(tmp_path / "r", session(60))
    assert main(["replay", "--json", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [json.loads(json.dumps(snapshot_object(s))) for s in live(session(60))]
    assert [line["t"] for line in lines] == [round(s.uptime_s, 6) for s in session(60)]
    assert err == ""


def test_a_bad_file_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").write_text("not a recording\n")
    assert main(["replay", "--json", str(tmp_path / "x")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "not a loopmon recording" in err


def test_a_damaged_file_prints_what_it_can(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record(tmp_path / "r", session(200))
    data = bytearray((tmp_path / "r").read_bytes())
    reader = open_reader(tmp_path / "r")
    middle = reader.blocks[len(reader.blocks) // 2]
    data[middle.offset + 40] ^= 0x55
    last = reader.blocks[-1]
    (tmp_path / "bad").write_bytes(bytes(data[: last.offset + last.size // 2]))
    assert main(["replay", "--json", str(tmp_path / "bad")]) == 0
    out, err = capsys.readouterr()
    assert 100 < len(out.splitlines()) < 200
    assert "damaged" in err and "cut at byte" in err


def test_an_unindexed_file_is_scanned_with_progress(tmp_path: Path) -> None:
    record(tmp_path / "r", session(100))
    reader = open_reader(tmp_path / "r")
    last = reader.blocks[-1]
    cut = tmp_path / "cut"
    cut.write_bytes((tmp_path / "r").read_bytes()[: last.offset + last.size])
    calls: list[tuple[int, int]] = []
    scanned = open_reader(cut, progress=lambda done, total: calls.append((done, total)))
    assert not scanned.indexed and calls[-1] == (cut.stat().st_size,) * 2
