"""``loopmon run`` runs a program as ``python`` would: argv, sys.path[0], __main__, exit
status, uncaught exceptions, death by signal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.instrument.helpers import env

pytestmark = pytest.mark.slow

PROGRAM = """\
import os, sys
print(sys.argv)
print(sys.path[0] == os.path.dirname(os.path.realpath(__file__)))
print(__name__, __file__ == os.path.abspath(sys.argv[0]))
how = sys.argv[1] if len(sys.argv) > 1 else ""
if how == "exit5":
    sys.exit(5)
if how == "exitmsg":
    sys.exit("goodbye")
if how == "raise":
    def inner():
        raise ValueError("boom")
    inner()
if how == "interrupt":
    raise KeyboardInterrupt
if how == "unawaited":  # the warning comes when the exception goes: at exit, as "sys:1"
    async def never():
        pass
    def fails():
        pending = never()
        raise ValueError("boom")
    fails()
"""


def both(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[bytes], ...]:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    plain = subprocess.run([sys.executable, str(script), *args], capture_output=True, env=env())
    watched = subprocess.run(
        [sys.executable, "-m", "loopmon.cli.run", str(script), *args],
        capture_output=True,
        env=env(),
    )
    return plain, watched


def program_stderr(err: bytes) -> bytes:
    return b"".join(
        line for line in err.splitlines(keepends=True) if not line.startswith(b"loopmon:")
    )


@pytest.mark.parametrize("how", ["", "exit5", "exitmsg", "raise", "interrupt", "unawaited"])
def test_the_program_runs_as_under_python(tmp_path: Path, how: str) -> None:
    plain, watched = both(tmp_path, *([how, "--flag", "x y"] if how else []))
    assert watched.returncode == plain.returncode
    assert watched.stdout == plain.stdout
    assert program_stderr(watched.stderr) == plain.stderr
    if how == "raise":
        assert b"inner" in watched.stderr and b"cli/run.py" not in watched.stderr


def test_a_module_runs_with_its_arguments(tmp_path: Path) -> None:
    pkg = tmp_path / "mod_here.py"
    pkg.write_text("import sys\nprint(sys.argv[1:], __name__)\n")
    cmd = ["-m", "mod_here", "--x", "1"]
    plain = subprocess.run([sys.executable, *cmd], capture_output=True, cwd=tmp_path, env=env())
    watched = subprocess.run(
        [sys.executable, "-m", "loopmon.cli.run", *cmd],
        capture_output=True,
        cwd=tmp_path,
        env=env(),
    )
    assert watched.returncode == plain.returncode == 0
    assert watched.stdout == plain.stdout == b"['--x', '1'] __main__\n"


def test_telemetry_before_the_stream_exists_says_so_and_runs(tmp_path: Path) -> None:
    script = tmp_path / "p.py"
    script.write_text("print('ran')\n")
    watched = subprocess.run(
        [sys.executable, "-m", "loopmon.cli.run", "--telemetry", "127.0.0.1:0", str(script)],
        capture_output=True,
        env=env(),
    )
    assert watched.returncode == 0 and watched.stdout == b"ran\n"
    assert all(line.startswith(b"loopmon:") for line in watched.stderr.splitlines())


UNCLOSED = """\
import asyncio, atexit, signal
loop = asyncio.new_event_loop()
loop.run_until_complete(asyncio.sleep(0.01))
# Never closed (Tornado's IOLoop.current().stop() leaves its loop so). Once the loop stops, the
# program's signals are its own again: no interval timer left to fire while Python exits
# (finalization puts SIGALRM back to SIG_DFL, and a timer still armed killed the process).
def mine():
    print(signal.getitimer(signal.ITIMER_REAL), signal.getsignal(signal.SIGALRM) == signal.SIG_DFL)
atexit.register(mine)
garbage = [list(range(1000)) for _ in range(3000)]  # an exit that takes a while
"""


def test_a_loop_left_unclosed_leaves_no_alarm_behind(tmp_path: Path) -> None:
    script = tmp_path / "unclosed.py"
    script.write_text(UNCLOSED)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, env=env())
    watched = subprocess.run(
        [sys.executable, "-m", "loopmon.cli.run", str(script)], capture_output=True, env=env()
    )
    assert plain.returncode == 0
    assert watched.returncode == plain.returncode, watched.stderr
    assert watched.stdout == plain.stdout == b"(0.0, 0.0) True\n"


TAKES_SIGALRM = """\
import asyncio, signal
calls = []
async def main():
    signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    await asyncio.sleep(0.3)
    print("handler calls:", len(calls))
    loop = asyncio.get_running_loop()
    got = []
    loop.add_signal_handler(signal.SIGALRM, lambda: got.append(1))
    await asyncio.sleep(0.3)
    print("loop handler calls:", len(got))
asyncio.run(main())
"""
ALARM_KILLS = """\
import asyncio, signal
async def main():
    signal.setitimer(signal.ITIMER_REAL, 0.05)  # SIGALRM's default action ends the program
    await asyncio.sleep(0.5)
    print("still alive")
asyncio.run(main())
"""


@pytest.mark.parametrize("program", [TAKES_SIGALRM, ALARM_KILLS], ids=["handler", "default"])
def test_sigalrm_is_the_programs_once_it_asks(tmp_path: Path, program: str) -> None:
    # The stall watch held SIGALRM: the program's handler got its ticks until a lag probe
    # noticed (4 calls in 0.3 s), and an alarm meant to end the program was swallowed.
    script = tmp_path / "alarm.py"
    script.write_text(program)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, env=env())
    watched = subprocess.run(
        [sys.executable, "-m", "loopmon.cli.run", str(script)], capture_output=True, env=env()
    )
    assert (watched.returncode, watched.stdout) == (plain.returncode, plain.stdout)
    assert program_stderr(watched.stderr) == plain.stderr
    assert b"stall watch is a thread now" in watched.stderr


def test_a_relative_script_path_is_kept_as_given(tmp_path: Path) -> None:
    # Python keeps sys.argv[0] as typed and makes __file__ absolute without normalizing it;
    # run once gave both as the normalized absolute path (runpy.run_path's argv[0]).
    (tmp_path / "sub").mkdir()
    (tmp_path / "prog.py").write_text(PROGRAM + "print(__file__)\n")
    for given in ("prog.py", "./sub/../prog.py"):
        plain = subprocess.run(
            [sys.executable, given, "raise"], capture_output=True, env=env(), cwd=tmp_path
        )
        watched = subprocess.run(
            [sys.executable, "-m", "loopmon.cli.run", given, "raise"],
            capture_output=True,
            env=env(),
            cwd=tmp_path,
        )
        assert watched.stdout == plain.stdout
        assert given.encode() in plain.stdout
        assert program_stderr(watched.stderr) == plain.stderr  # the traceback's file names
