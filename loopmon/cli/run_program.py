"""Running the program of ``loopmon run`` as ``python`` runs it: a script or ``-m module`` as
``__main__`` with its arguments, the same ``sys.argv``, ``sys.path[0]``, ``__file__``, exit
status, and an uncaught exception printed and kept as Python prints and keeps it."""

from __future__ import annotations

import os
import runpy
import signal
import sys
from types import TracebackType

_LOOPMON_FILES = {
    os.path.abspath(__file__),
    os.path.abspath(os.path.join(os.path.dirname(__file__), "run.py")),
}


def _program_traceback(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the program's first frame on, without loopmon's and runpy's."""
    skip = {*_LOOPMON_FILES, os.path.abspath(runpy.__file__), "<frozen runpy>"}
    while tb is not None and (
        os.path.abspath(tb.tb_frame.f_code.co_filename) in skip
        or tb.tb_frame.f_code.co_filename == "<frozen runpy>"
    ):
        tb = tb.tb_next
    return tb


def _exit_status(code: object) -> int:
    """What Python makes of ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF  # as the OS reports it
    try:
        print(code, file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


def run_program(script: str | None, module: str | None, args: list[str]) -> int:
    """Run a script or module as __main__ with ``args``; its exit status."""
    try:
        if module is not None:
            sys.argv = ["-m", *args]
            sys.path[0] = os.getcwd()
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert script is not None
            sys.argv = [script, *args]
            sys.path[0] = os.path.dirname(os.path.realpath(script))
            run_script(script)
    except SystemExit as exc:
        return _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _uncaught(exc)
        return -signal.SIGINT
    except BaseException as exc:
        _uncaught(exc)
        return 1
    return 0


def run_script(script: str) -> None:
    """Run a script file as ``python script.py`` does: ``sys.argv[0]`` as given, ``__file__``
    (and the code's file name, so tracebacks) the path made absolute by joining the working
    directory, not normalized (``../app.py`` is ``/cwd/../app.py``), a ``SourceFileLoader``.
    ``runpy.run_path`` sets ``sys.argv[0]`` to the path it is given, so it is left to what is
    not a plain file (a directory or a zip with ``__main__.py``) and to compiled files."""
    import importlib.machinery
    import pkgutil
    import types

    path = script if os.path.isabs(script) else os.path.join(os.getcwd(), script)
    if pkgutil.get_importer(path) is not None or path.endswith((".pyc", ".pyo")):
        runpy.run_path(path, run_name="__main__")
        sys.argv[0] = script
        return
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None  # type: ignore[attr-defined]
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _uncaught(exc: BaseException) -> None:
    """Print the program's uncaught exception as Python does, and keep it as Python does, in
    ``sys.last_*`` until exit: what its frames hold goes at finalization, as it would (an
    unawaited coroutine's warning was printed at once, from run.py, with a tracemalloc hint)."""
    exc = exc.with_traceback(_program_traceback(exc.__traceback__))
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
    if sys.version_info >= (3, 12):
        sys.last_exc = exc  # new in 3.12, set beside the three above
    sys.excepthook(type(exc), exc, exc.__traceback__)
