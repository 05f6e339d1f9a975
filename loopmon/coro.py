"""The coroutine driver behind ``IOLoop.run_sync`` and callbacks that return a coroutine.

There is no ``tornado.gen`` here: a native coroutine awaits futures (anything with
``add_done_callback``, such as ``concurrent.futures.Future``), and each time it yields one the
driver resumes it when that future is done, on the loop, through the two calls it is given.
A bare ``yield`` (``await`` of something that yields None) resumes it on the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

AddCallback = Callable[..., None]
AddFuture = Callable[[Any, Callable[[Any], Any]], None]


def drive(
    coro: Coroutine[Any, Any, Any], add_callback: AddCallback, add_future: AddFuture
) -> Future[Any]:
    """Run ``coro`` to completion on a loop; the future holds its result or exception."""
    future: Future[Any] = Future()

    def step(value: Any = None) -> None:
        error: BaseException | None = None
        while True:
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                future.set_result(stop.value)
                return
            except BaseException as exc:
                future.set_exception(exc)
                return
            if yielded is None:
                add_callback(step)
                return
            if callable(getattr(yielded, "add_done_callback", None)):
                add_future(yielded, lambda _: step())
                return
            # Thrown into the coroutine, as Tornado's BadYieldError is: it may catch it and go
            # on, and if it does not, its future fails instead of never resolving.
            error = TypeError(f"cannot wait for {yielded!r} on an IOLoop")

    step()
    return future
