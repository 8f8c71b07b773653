"""How a flow run stops early: Ctrl-C and SIGTERM (both cancel it), its timeout, and a
runner that fails to start. Each ends the runs still open, so none is left Pending.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .states import Cancelled, Crashed, State, TimedOut

if TYPE_CHECKING:
    from ._driver import _FlowRunDriver

__all__ = ["interrupted", "sigterm_interrupts", "start_runner", "timed_out"]


def _interrupt_on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While a flow runs in the main thread, SIGTERM interrupts it as Ctrl-C does."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt_on_signal)
    except ValueError:  # not the main thread: only it can set a signal handler
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_runner(driver: _FlowRunDriver) -> State | None:
    ours = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is _interrupt_on_signal
    )
    try:
        driver.runner.__enter__()
    except Exception as exc:
        name = getattr(driver.runner, "name", driver.runner)
        return Crashed(f"Task runner {name!r} failed to start: {type(exc).__name__}: {exc}", exception=exc)
    if ours and signal.getsignal(signal.SIGTERM) is not _interrupt_on_signal:
        # The runner's engine put in its own SIGTERM handler (ray.init does, and exits 15):
        # during the flow run, SIGTERM still cancels the flow run as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt_on_signal)
    return None


def _stop(driver: _FlowRunDriver, *exc_info: Any) -> None:
    driver.cancel_pending()
    try:
        driver.runner.__exit__(*exc_info)
    finally:
        driver.end_unfinished()


def interrupted(driver: _FlowRunDriver, exc: BaseException) -> State:
    _stop(driver, type(exc), exc, exc.__traceback__)
    return Cancelled(f"Flow run was cancelled: {type(exc).__name__}{f' ({exc})' if str(exc) else ''}.")


def timed_out(driver: _FlowRunDriver, seconds: float) -> State:
    _stop(driver, TimeoutError, None, None)
    message = f"Flow run exceeded timeout of {seconds:g} second(s)"
    driver.logger.error(message)
    return TimedOut(message, exception=TimeoutError(message))
