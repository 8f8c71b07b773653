"""The parts of a task run around the user's function: timeout, async, prints, results, hooks.

Split from `taskloom._worker` to keep each module short; like the engine, everything here runs
where the task runs.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .states import Cached, Failed, State, StateType

#: The clock of cache expiry: a test moves it instead of sleeping.
_now = time.time

if TYPE_CHECKING:
    from ._calls import TaskRunCall


class _EventRecorder(Protocol):
    """The engine's recorder of a run, as this module uses it (the engine is above it)."""

    def log(self, level: int, msg: str, *args: Any) -> None: ...

__all__ = ["ResultPlan", "TaskTimeout", "execute", "run_state_hooks", "wants_results"]


class TaskTimeout(BaseException):
    """Raised into a task that outlived its ``timeout_seconds`` (a BaseException, so a
    task's ``except Exception`` does not swallow it)."""


# -- log_prints: print() inside a run becomes an INFO line of that run -----------------------

_print_logger: contextvars.ContextVar[Any] = contextvars.ContextVar("taskloom_print_logger", default=None)
_builtin_print = builtins.print


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    logger = _print_logger.get()
    if logger is None or (file is not None and file is not sys.stdout):
        _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    logger.info((" " if sep is None else sep).join(str(a) for a in args))


def _install_print() -> None:
    # Replaced once per process, and only when a run asks for it: for everyone else print()
    # behaves as before (the replacement defers to the original outside log_prints runs).
    if builtins.print is not _print:
        builtins.print = _print


# -- running the function ------------------------------------------------------------------


def execute(call: TaskRunCall, parameters: dict[str, Any], hook: Callable[..., Any] | None) -> Any:
    """Call the task's function with ``parameters``: timed, with prints logged if asked."""
    task = call.task
    log_prints = task.log_prints if task.log_prints is not None else call.defaults.log_prints
    token = None
    if log_prints:
        from .logging import get_run_logger

        _install_print()
        token = _print_logger.set(get_run_logger())
    try:
        # A runner that enforces timeouts stops the worker at the deadline: no timer here.
        timeout = None if call.defaults.runner_timeouts else task.timeout_seconds
        if hook is None and timeout is None and not task.is_async:
            # Most runs: no frame for a closure, nor for `Task._invoke` when it is a plain call.
            return task.fn(**parameters) if task._by_keyword else task._invoke(parameters)
        if task.is_async:
            invoke: Callable[[], Any] = lambda: _run_coroutine(task._invoke(parameters), timeout)  # noqa: E731
        elif timeout is not None:
            invoke = lambda: _call_with_timeout(task._invoke, parameters, timeout)  # noqa: E731
        else:
            invoke = lambda: task._invoke(parameters)  # noqa: E731
        if hook is None:
            return invoke()
        return hook(task_run=call.task_run, call=invoke)
    finally:
        if token is not None:
            _print_logger.reset(token)


def _run_coroutine(coroutine: Any, timeout: float | None) -> Any:
    import asyncio

    async def timed() -> Any:
        if timeout is None:
            return await coroutine
        try:
            async with asyncio.timeout(timeout):
                return await coroutine
        except TimeoutError:
            if time.monotonic() - started >= timeout:
                raise TaskTimeout from None
            raise

    started = time.monotonic()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(timed())
    # A loop already runs in this thread (an async flow's body on the sequential runner runs
    # its tasks inline): the coroutine gets its own loop on a helper thread while this one
    # waits, as Prefect's run_coro_as_sync does. The run's context goes along.
    import concurrent.futures
    import contextvars

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskloom-async") as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, timed()).result()


def _call_with_timeout(fn: Callable[..., Any], parameters: dict[str, Any], timeout: float) -> Any:
    """Run ``fn`` on a helper thread and stop waiting after ``timeout`` seconds.

    The run is TimedOut at once. The helper thread gets `TaskTimeout` raised at its next
    Python instruction; a thread blocked inside C (a sleep, a socket read) finishes that call
    first and its result is dropped. Runners that own their processes (processes, Ray) also
    stop the work itself.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(fn, parameters)
        except TaskTimeout:
            pass
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=target, name="taskloom-timed-task", daemon=True)
    thread.start()
    if not done.wait(timeout):
        _interrupt(thread)
        raise TaskTimeout
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _interrupt(thread: threading.Thread) -> None:
    import ctypes

    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(TaskTimeout))


# -- results: persistence and the cache ------------------------------------------------------


def wants_results(call: TaskRunCall) -> bool:
    """Whether the run keeps its result: its task's cache or ``persist_result``, else the
    flow run's ``results.persist``."""
    keeps = call.task._keeps_results
    return bool(call.defaults.persist_result if keeps is None else keeps)


class ResultPlan:
    """Where this run's result goes (and may already be): storage, key, serializer."""

    def __init__(self, call: TaskRunCall, storage: Any, key: str, cache_key: str | None, serializer: tuple[str, Any]) -> None:
        self.call = call
        self.storage = storage
        self.key = key
        self.cache_key = cache_key
        self.serializer_name, self.serializer = serializer

    @classmethod
    def of(cls, call: TaskRunCall, parameters: dict[str, Any]) -> ResultPlan | State:
        from . import results
        from .caching import CacheContext

        task = call.task
        owner = f"Task {task.name!r}"
        cache_key = None
        try:
            context = CacheContext(task, call.task_run, call.flow_run)
            if task.cache_key_fn is not None:
                cache_key = task.cache_key_fn(context, parameters)
            elif task.cache_policy is not None:
                cache_key = task.cache_policy.key(context, parameters)
        except Exception as exc:
            return Failed(f"{owner}: cache_key_fn raised {type(exc).__name__}: {exc}", exception=exc)
        if cache_key is not None and not isinstance(cache_key, str):
            return Failed(f"{owner}: cache_key_fn must return a string or None, got {cache_key!r}.")
        defaults = call.defaults
        try:
            storage = results.resolve_storage(
                task.result_storage or defaults.result_storage, defaults.result_path, defaults.storage_options
            )
            serializer = results.resolve_serializer(task.result_serializer or defaults.result_serializer)
        except Exception as exc:
            return Failed(f"{owner}: {exc}", exception=exc)
        key = f"cache/{cache_key}" if cache_key else f"results/{call.task_run.id}"
        return cls(call, storage, key, cache_key, serializer)

    def lookup(self, recorder: _EventRecorder) -> State | None:
        """A Cached state if a fresh result is stored under the cache key, else None."""
        from .results import PersistedResult, ResultCorrupt, get_serializer, read_record

        task = self.call.task
        if self.cache_key is None or task.refresh_cache:
            return None
        try:
            header, payload = read_record(self.storage, self.key)
        except KeyError:
            return None
        except ResultCorrupt as exc:
            recorder.log(logging.WARNING, "%s The task runs again and replaces it.", exc)
            return None
        except Exception as exc:
            recorder.log(logging.WARNING, "Cache look-up failed (%s: %s); the task runs.", type(exc).__name__, exc)
            return None
        expires = header.get("expires")
        if expires is not None and expires < _now():
            return None
        name = str(header.get("serializer", ""))
        try:
            # Loaded now, not when the result is asked for: an entry that cannot be loaded
            # (its class was renamed, its serializer is gone) is a miss, not a Cached run
            # whose result() raises until someone deletes the file.
            custom = name.startswith("custom:")
            serializer = self.serializer if custom else get_serializer(name)
            value = serializer.loads(payload)
        except Exception as exc:
            recorder.log(
                logging.WARNING,
                "The cache entry %r could not be loaded (%s: %s); the task runs again and replaces it.",
                self.key, type(exc).__name__, exc,
            )
            return None
        return Cached(data=PersistedResult(self.storage, self.key, serializer if custom else name, value, loaded=True))

    def persist(self, recorder: _EventRecorder, value: Any) -> State:
        from .results import PersistedResult, write_record

        task = self.call.task
        try:
            payload = self.serializer.dumps(value)
        except Exception as exc:
            message = (
                f"Task {task.name!r}: its result {type(value).__name__} could not be serialized "
                f"with {self.serializer_name!r}: {type(exc).__name__}: {exc}"
            )
            recorder.log(logging.ERROR, message)
            return Failed(message, exception=exc)
        expires = _now() + task.cache_expiration if task.cache_expiration is not None else None
        try:
            write_record(self.storage, self.key, self.serializer_name, payload, expires)
        except Exception as exc:
            message = f"Task {task.name!r}: writing its result to {self.storage!r} failed: {type(exc).__name__}: {exc}"
            recorder.log(logging.ERROR, message)
            return Failed(message, exception=exc)
        data = PersistedResult(self.storage, self.key, self.serializer_name, value, loaded=True)
        return State(StateType.COMPLETED, "Completed", None, time.time(), data)


# -- the task's own state hooks ----------------------------------------------------------------


def run_state_hooks(call: TaskRunCall, recorder: _EventRecorder, state: State) -> None:
    task = call.task
    if state.type is StateType.COMPLETED:
        hooks = task.on_completion
    elif state.type is StateType.FAILED:
        hooks = task.on_failure
    elif state.type is StateType.CRASHED:
        hooks = task.on_crashed
    else:
        return
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            hook(task, call.task_run, state)
        except Exception as exc:
            recorder.log(
                logging.ERROR,
                "An error was encountered while running hook %r: %s: %s",
                name,
                type(exc).__name__,
                exc,
            )
