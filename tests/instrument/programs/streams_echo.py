"""An asyncio streams echo server, written as anyone would, for `loopmon run` tests.

Prints its port, echoes lines; "block" blocks the loop in blocking_handler (a stall); "quit"
makes it print what it saw and exit with status 3 once every client has gone. It sets a task
factory of its own."""

import asyncio
import sys
import time

made = []


def naming_factory(loop, coro, **kwargs):
    task = asyncio.Task(coro, loop=loop, **kwargs)
    made.append(task)
    return task


def blocking_handler():
    time.sleep(0.3)


class State:
    active = 0
    quitting = False


async def serve(reader, writer, done):
    State.active += 1
    try:
        while line := await reader.readline():
            if line == b"block\n":
                blocking_handler()
            if line == b"quit\n":
                State.quitting = True
            writer.write(line)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    finally:
        State.active -= 1
        # Stop once every client has gone: no task is left to cancel, so the output is the
        # same from run to run.
        if State.quitting and not State.active:
            done.set()


async def main():
    loop = asyncio.get_running_loop()
    loop.set_task_factory(naming_factory)
    done = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: serve(r, w, done), "127.0.0.1", 0)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    print("factory kept:", loop.get_task_factory() is naming_factory)
    await done.wait()
    tasks = sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks())
    print("tasks:", tasks)
    print("factory made", len(made) > 0)
    server.close()
    print("bye", file=sys.stderr)
    return 3


sys.exit(asyncio.run(main()))
