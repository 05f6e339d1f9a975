"""The instrument in this process: which loops it finds, what it adds to them (nothing the
program can see), tasks, stalls, the loops it cannot see into, fork."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from loopmon.instrument import Instrument, internals
from loopmon.snapshot import Snapshot


@pytest.fixture
def instrument() -> Iterator[Instrument]:
    said: list[str] = []
    inst = Instrument(stall_threshold=0.1, stall_watch="thread", say=said.append)
    inst.said = said  # type: ignore[attr-defined]
    inst.install()
    try:
        yield inst
    finally:
        inst.uninstall()
        asyncio.set_event_loop_policy(None)


async def echo_once(inst: Instrument) -> tuple[Snapshot, set[str]]:
    held: list[asyncio.StreamWriter] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # Held until the snapshot: from 3.13 a StreamWriter collected with its handler's
        # end closes the transport (StreamWriter.__del__), and the row would be gone.
        held.append(w)
        w.write(await r.read(10))
        await w.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"hi")
    assert await r.read(10) == b"hi"
    local = w.get_extra_info("sockname")
    snapshot = inst.snapshot()
    w.close()
    for server_side in held:
        server_side.close()
    server.close()
    return snapshot, {f"{local[0]}:{local[1]}"}


def test_a_loop_made_by_asyncio_run_is_watched(instrument: Instrument) -> None:
    snapshot, clients = asyncio.run(echo_once(instrument))
    kinds = sorted(r.kind for r in snapshot.connections)
    assert kinds.count("listener") == 1 and kinds.count("connection") >= 2
    server_side = [r for r in snapshot.connections if r.peer in clients]
    assert len(server_side) == 1
    listener = next(r for r in snapshot.connections if r.kind == "listener")
    assert server_side[0].listener_id == listener.id
    assert [loop.id for loop in snapshot.loops] == [1]
    assert snapshot.loops[0].backend.startswith("asyncio selector")
    assert snapshot.interval.iterations > 0 and snapshot.interval.events > 0
    assert all(r.loop == 1 for r in snapshot.connections)


def test_loops_on_threads_and_loops_made_outside_the_policy_have_ids(
    instrument: Instrument,
) -> None:
    got: dict[str, Any] = {}

    async def main(name: str) -> None:
        got[name] = instrument.snapshot()

    t = threading.Thread(target=lambda: asyncio.run(main("thread")))
    t.start()
    t.join()
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:  # not the policy
        runner.run(main("factory"))
    ids = {w.id for w in instrument.watches} | {row.id for s in got.values() for row in s.loops}
    assert ids == {1, 2}
    assert any(row.name != "MainThread" for row in got["thread"].loops)
    assert got["factory"].loops[-1].backend.startswith("asyncio selector")


def test_loopmon_adds_no_task_and_keeps_the_programs_task_factory(
    instrument: Instrument,
) -> None:
    made = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kw)
        made.append(task)
        return task

    async def child(go: asyncio.Event) -> None:
        await go.wait()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        before = asyncio.all_tasks()
        loop.set_task_factory(factory)
        kept = loop.get_task_factory() is factory
        go = asyncio.Event()
        task = asyncio.create_task(child(go), name="kid")
        await asyncio.sleep(0.25)  # snapshots' timers, lag probes, task rows refreshed
        rows = instrument.snapshot().tasks
        after = asyncio.all_tasks() - {task}
        go.set()
        await task
        return {"before": before, "after": after, "kept": kept, "rows": rows}

    instrument.start_periodic(lambda s: None, 50)
    out = asyncio.run(main())
    assert out["kept"] and made[0].get_name() == "kid"  # then asyncio.run's own shutdown tasks
    assert out["before"] == out["after"]  # only the program's own
    assert len(out["before"]) == 1
    names = {row.name: row for row in out["rows"]}
    assert len(names) == 2 and "kid" in names  # main (its name counts process-wide) and kid
    assert names["kid"].coro.endswith("child") and "wait" in names["kid"].waiting_at
    assert names["kid"].age_s >= 0.2


def test_tasks_keep_the_names_asyncio_gives_them(instrument: Instrument) -> None:
    # 3.13.0's create_task renames a task made by any task factory (set_name(None): "None"),
    # so loopmon dates tasks in create_task, not with a factory of its own.
    async def child() -> None:
        await asyncio.sleep(0)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(child()), loop.create_task(child(), name="named")]
        async with asyncio.TaskGroup() as group:
            tasks.append(group.create_task(child()))
        assert loop.get_task_factory() is None  # loopmon set none
        current = asyncio.current_task()
        assert current is not None
        return [current.get_name(), *(t.get_name() for t in tasks)]

    names = asyncio.run(main())
    assert [re.sub(r"\d+", "N", name) for name in names] == ["Task-N", "Task-N", "named", "Task-N"]


def test_in_debug_mode_a_task_was_created_where_the_program_made_it(
    instrument: Instrument,
) -> None:
    # asyncio's debug mode says where a task was made ("created at"): it named loopmon's
    # create_task wrapper instead of the program's call.
    async def child() -> None:
        await asyncio.sleep(0)

    async def main() -> Any:
        task = asyncio.get_running_loop().create_task(child())  # the line to name
        await task
        return task._source_traceback[-1]  # type: ignore[attr-defined]

    made_at = asyncio.run(main(), debug=True)
    assert (made_at.filename, made_at.name) == (__file__, "main")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in 3.12")
def test_the_programs_eager_task_factory_is_chained(instrument: Instrument) -> None:
    async def quick() -> int:
        return 1  # never suspends: an eager task is done once created

    async def waits(go: asyncio.Event) -> None:
        await go.wait()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        eager = asyncio.eager_task_factory  # type: ignore[attr-defined, unused-ignore]
        loop.set_task_factory(eager)
        go = asyncio.Event()
        done_at_once = asyncio.create_task(quick()).done()
        waiting = asyncio.create_task(waits(go), name="waiter")
        await asyncio.sleep(0.25)  # past the task rows' refresh interval
        rows = instrument.snapshot().tasks
        go.set()
        await waiting
        return {"kept": loop.get_task_factory() is eager, "done": done_at_once, "rows": rows}

    out = asyncio.run(main())
    assert out["kept"] and out["done"]
    waiter = [row for row in out["rows"] if row.name == "waiter"]
    assert len(waiter) == 1 and waiter[0].coro.endswith("waits") and waiter[0].age_s >= 0.2


def test_a_stall_on_another_thread_names_the_function_that_blocked(
    instrument: Instrument,
) -> None:
    def blocking_function() -> None:
        time.sleep(0.3)

    async def main() -> None:
        await asyncio.sleep(0.01)
        blocking_function()
        await asyncio.sleep(0.01)

    t = threading.Thread(target=lambda: asyncio.run(main()))
    t.start()
    t.join()
    stalls = [e for e in instrument.snapshot().events if e.kind == "stall"]
    assert len(stalls) == 1
    assert "blocking_function" in stalls[0].text and "blocking_function" in stalls[0].detail
    assert stalls[0].id == 1


def test_a_loop_it_cannot_see_into_runs_with_loop_level_figures(
    instrument: Instrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internals, "selector_of", lambda loop: None)

    async def main() -> int:
        await asyncio.sleep(0.25)
        time.sleep(0.25)  # a stall the lag probe sees
        await asyncio.sleep(0.15)
        return 7

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        assert runner.run(main()) == 7
    said = instrument.said  # type: ignore[attr-defined]
    assert len([s for s in said if "loop-level figures only" in s]) == 1
    snapshot = instrument.snapshot()
    (loop,) = snapshot.loops
    assert loop.totals.lag.total >= 2 and loop.totals.stalls == 1
    assert snapshot.connections == ()


# From 3.12 os.fork warns in a process with threads, and pytest's has some (earlier tests').
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_its_own_sockets_are_no_rows_and_a_forked_child_does_not_keep_them(
    instrument: Instrument,
) -> None:
    mine, other = socket.socketpair()

    async def main() -> Snapshot:
        loop = asyncio.get_running_loop()
        loop.add_reader(mine.fileno(), lambda: None)
        await asyncio.sleep(0)
        snapshot = instrument.snapshot()
        loop.remove_reader(mine.fileno())
        return snapshot

    instrument.own(mine)
    fd = mine.fileno()
    try:
        snapshot = asyncio.run(main())
        assert fd not in {r.fd for r in snapshot.connections}
        pid = os.fork()
        if pid == 0:  # the child: loopmon's socket is gone, the program's is not
            try:
                os.fstat(fd)
                code = 1
            except OSError:
                code = 0 if os.fstat(other.fileno()) else 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        os.fstat(fd)  # still the parent's
    finally:
        mine.close()
        other.close()


def test_a_disowned_fd_number_is_the_programs_again(instrument: Instrument) -> None:
    # loopmon closes a socket it owned; the kernel gives the number to the program's next
    # socket at once, which must be a row like any other.
    mine = socket.socket()
    fd = mine.fileno()
    instrument.own(mine)
    instrument.disown(mine)
    mine.close()
    theirs, peer = socket.socketpair()
    try:

        async def main() -> Snapshot:
            loop = asyncio.get_running_loop()
            loop.add_reader(theirs.fileno(), lambda: None)
            await asyncio.sleep(0)
            snapshot = instrument.snapshot()
            loop.remove_reader(theirs.fileno())
            return snapshot

        snapshot = asyncio.run(main())
        assert theirs.fileno() in {r.fd for r in snapshot.connections}
        assert fd not in instrument.excluded
    finally:
        theirs.close()
        peer.close()


def test_a_loop_of_loopmons_own_is_never_watched(instrument: Instrument) -> None:
    from loopmon.ioloop import IOLoop

    ours, theirs = IOLoop(make_current=False), IOLoop(make_current=False)
    instrument.own_loop(ours)
    try:
        for loop in (ours, theirs):
            loop.add_callback(loop.stop)
            loop.start()
        watched = [getattr(w, "loop", None) for w in instrument.watches]
        assert theirs in watched and ours not in watched
    finally:
        ours.close()
        theirs.close()


def test_task_rows_are_refreshed_a_chunk_at_a_time() -> None:
    import itertools

    from loopmon.instrument.tasks import CHUNK, TaskTable

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        table = TaskTable(1, itertools.count(1))
        go = asyncio.Event()
        tasks = [asyncio.create_task(go.wait()) for _ in range(CHUNK * 2 + 50)]
        sizes = []
        now = 100.0
        for _ in range(4):
            now += 10.0
            sizes.append(len(table.refresh(loop, now)))
        go.set()
        await asyncio.gather(*tasks)
        for _ in range(3):  # the pass under way meets them done; the next one lists 1
            now += 10.0
            table.refresh(loop, now)
        sizes.append(len(table.rows))
        sizes.append(table.count)
        return sizes

    # The main task is one of them, counted and listed as well.
    total = CHUNK * 2 + 51
    assert asyncio.run(main()) == [CHUNK, 2 * CHUNK, total, total, 1, 1]


def test_the_tick_throttle_reads_the_loop_threads_cpu_not_the_wall_clock() -> None:
    # A tick that took 30 ms of wall time (preempted on a busy machine) but 0.1 ms of the
    # thread's CPU must not make the next tick skip: the 2 % budget is the program's CPU.
    wall = [100.0]
    cpu = [5.0]
    inst = Instrument(stall_threshold=0.1, stall_watch="off", clock=lambda: wall[0])
    inst.cpu_clock = lambda: cpu[0]
    got: list[Snapshot] = []

    def sink(snapshot: Snapshot) -> None:
        got.append(snapshot)
        wall[0] += 0.030
        cpu[0] += 0.0001

    class Idle:
        def is_running(self) -> bool:
            return False

    inst.start_periodic(sink, 25.0)
    for _ in range(3):
        wall[0] += 0.040
        inst._tick_watch = Idle()  # type: ignore[assignment]
        inst._tick()
    assert len(got) == 3 and inst.skipped == 0
    assert inst.build_seconds == pytest.approx(0.0001)
    # a build of 2 ms of CPU: 2 ms / 2 % = 100 ms before the next one
    inst._sinks[:] = [lambda s: cpu.__setitem__(0, cpu[0] + 0.002)]
    wall[0] += 0.040
    inst._tick_watch = Idle()  # type: ignore[assignment]
    inst._tick()
    wall[0] += 0.040
    inst._tick_watch = Idle()  # type: ignore[assignment]
    inst._tick()
    assert inst.skipped == 1


def test_ticks_keep_their_period_from_each_ticks_start() -> None:
    # Re-armed a period after the tick ended, 25 Hz ran at ~23 (the tick's own time and the
    # timer's lateness added up); each tick is armed from the previous one's start.
    wall = [100.0]
    inst = Instrument(stall_threshold=0.1, stall_watch="off", clock=lambda: wall[0])
    delays: list[float] = []

    class Watch:
        def is_running(self) -> bool:
            return True

        def call_later(self, delay: float, fn: object) -> object:
            delays.append(round(delay, 6))
            return lambda: None

    def slow_sink(snapshot: Snapshot) -> None:
        wall[0] += 0.010  # the tick takes 10 ms

    inst.start_periodic(slow_sink, 25.0)
    inst.cpu_clock = lambda: 0.0
    inst._arm_tick(Watch())  # type: ignore[arg-type]
    for late in (0.0, 0.005, 0.100):  # on time, 5 ms late, later than a whole period
        wall[0] += delays[-1] + late
        inst._tick()
    assert delays == [0.04, 0.03, 0.025, 0.0]
