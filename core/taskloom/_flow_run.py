"""A flow run, from settings to final state, in the flow's process.

It resolves settings and the runner before any task runs, runs the body with the runner
entered (retrying the body, timing it out, cancelling on Ctrl-C or SIGTERM), and settles the
final state by Prefect's rule. Imported on the first flow run, not at ``import taskloom``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Protocol

from . import plugins
from ._calls import RunDefaults
from ._current import _flow_run_driver
from ._driver import _FlowRunDriver
from ._final_state import final_state, not_ready
from ._interrupts import interrupted, sigterm_interrupts, start_runner, timed_out
from ._names import from_template, run_name
from ._placement import ResultPlacement, resolved_options, resolved_path
from .config import Settings, load_settings
from .context import FlowRun, get_task_run
from .logging import flush_logging, setup_logging
from .runners import Capability, resolve_task_runner
from .states import (
    AwaitingRetry,
    Cancelled,
    Crashed,
    Failed,
    Retrying,
    State,
    StateType,
    _mark_run,
)

__all__ = ["run_flow", "run_flow_async"]

engine_logger = logging.getLogger("taskloom.engine")


class _Flow(Protocol):
    """A `taskloom.flows.Flow` as its run reads it, named through this protocol: the flows are
    the layer above (calling one runs this module), so this module does not import them."""

    @property
    def name(self) -> str: ...
    @property
    def task_runner(self) -> Any: ...
    @property
    def flow_run_name(self) -> Any: ...
    @property
    def log_prints(self) -> Any: ...
    @property
    def persist_result(self) -> Any: ...
    @property
    def retries(self) -> Any: ...
    @property
    def retry_delay_seconds(self) -> Any: ...
    @property
    def timeout_seconds(self) -> Any: ...
    @property
    def on_completion(self) -> Any: ...
    @property
    def on_failure(self) -> Any: ...
    @property
    def on_crashed(self) -> Any: ...
    @property
    def on_cancellation(self) -> Any: ...

    def _invoke(self, parameters: dict[str, Any]) -> Any: ...


class _FlowTimeout(BaseException):
    """Raised into a flow body that outlived its ``timeout_seconds``."""


# -- starting and finishing ------------------------------------------------------------------


class _Run:
    """What stays the same across the attempts of one flow run."""

    def __init__(self, flow: _Flow, parameters: dict[str, Any]) -> None:
        self.flow = flow
        self.parameters = parameters
        self.parent: _FlowRunDriver | None = _flow_run_driver.get()
        self.settings: Settings = load_settings()
        self.log_level = setup_logging(self.settings)
        self.runner = resolve_task_runner(flow.task_runner, self.settings)
        parent_task_run = get_task_run()
        self.flow_run = FlowRun(
            uuid.uuid4(), self._name(), flow.name, parameters,
            parent_task_run_id=parent_task_run.id if parent_task_run is not None else None,
            parent_flow_run_id=self.parent.flow_run.id if self.parent is not None else None,
        )
        settings = self.settings
        # As given (relative paths kept), for the check of where results live.
        self.storage_options = _storage_options(settings) if settings.storages else None
        self.defaults = RunDefaults(
            persist_result=bool(flow.persist_result if flow.persist_result is not None else settings["results.persist"]),
            result_storage=settings["results.storage"],
            result_path=resolved_path(settings["results.path"]),
            result_serializer=settings["results.serializer"],
            log_prints=flow.log_prints,
            storage_options=resolved_options(self.storage_options),
            runner_timeouts=bool(self.runner.capabilities & Capability.ENFORCES_TIMEOUTS),
            retry_defaults=_retry_defaults(settings),
        )
        self.hook = plugins.get_plugin_manager().hook

    def _name(self) -> str:
        template = self.flow.flow_run_name
        if template is None:
            return run_name()
        return from_template(template, self.parameters, f"Flow {self.flow.name!r}", "flow_run_name")

    def start(self) -> None:
        flow, flow_run = self.flow, self.flow_run
        if self.parent is not None:
            self.parent.logger.info("Created subflow run %r for flow %r", flow_run.name, flow.name)
        else:
            engine_logger.info(
                "Created flow run %r for flow %r",
                flow_run.name,
                flow.name,
                extra={"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name},
            )
        if self.parent is None:
            # Once per flow run, here: not once per process that loads plugins (every worker).
            for failure in plugins.failures():
                engine_logger.warning(
                    "Plugin %r (%s) could not be used and is skipped: %s",
                    failure.name, failure.distribution or failure.value, failure.reason,
                    extra={"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name},
                )
        if flow.task_runner is not None and self.settings.sources.get("task_runner") == "cli":
            engine_logger.warning(
                "Flow %r names its task runner in code; --runner %s is ignored.",
                flow.name,
                self.settings["task_runner"],
            )
        self.hook.taskloom_flow_run_started(
            flow_run=flow_run, task_runner=self.runner, settings=self.settings
        )

    def driver(self, attempt: int) -> _FlowRunDriver:
        runner = self.runner if attempt == 0 else self.runner.duplicate()
        driver = _FlowRunDriver(
            self.flow_run, runner, self.log_level, self.defaults, self.settings.concurrency_limits
        )
        if getattr(runner, "remote_workers", False):
            driver.placement = ResultPlacement(
                runner, self.defaults, self.settings["results.path"], self.storage_options
            )
        return driver

    def retry(self, driver: _FlowRunDriver, state: State, attempt: int) -> bool:
        flow = self.flow
        if state.type is not StateType.FAILED or attempt >= flow.retries:
            return False
        delay = flow.retry_delay_seconds or 0.0
        driver.logger.info(
            "Received non-final state %r when proposing final state %r and will attempt to run again...",
            AwaitingRetry().name,
            state.name,
        )
        if delay:
            time.sleep(delay)
        driver.logger.info("%s", Retrying(f"attempt {attempt + 2} of {flow.retries + 1}"))
        return True

    def abandon(self, driver: _FlowRunDriver | None, exc: BaseException) -> None:
        """End a flow run that stopped between attempts, so observers always see its end."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            state = Cancelled(f"Flow run was cancelled: {type(exc).__name__}.")
        else:
            state = Crashed(f"Flow run crashed: {type(exc).__name__}: {exc}", exception=exc)
        self._ended(driver, state)

    def _ended(self, driver: _FlowRunDriver | None, state: State) -> None:
        """Say the run's final state: in its log, to observers and to a parent flow run."""
        _mark_run(state, self.flow_run.id)
        if driver is not None:
            driver.logger.log(logging.INFO if state.is_completed() else logging.ERROR, "Finished in state %r", state)
        flush_logging()  # the run's lines are out before observers hear of its end
        self.hook.taskloom_flow_run_finished(flow_run=self.flow_run, state=state)
        if self.parent is not None:
            self.parent.record_subflow(self.flow_run.name, state)

    def finish(self, driver: _FlowRunDriver, state: State, return_state: bool) -> Any:
        flow = self.flow
        hooks = {
            StateType.COMPLETED: flow.on_completion,
            StateType.FAILED: flow.on_failure,
            StateType.CRASHED: flow.on_crashed,
            StateType.CANCELLED: flow.on_cancellation,
        }.get(state.type, [])
        for hook in hooks:
            try:
                hook(flow, self.flow_run, state)
            except Exception as exc:
                driver.logger.error(
                    "An error was encountered while running hook %r: %s: %s",
                    getattr(hook, "__name__", hook), type(exc).__name__, exc,
                )
        self._ended(driver, state)
        if return_state:
            return state
        return state.result()


def _error_log(driver: _FlowRunDriver, error: BaseException | None) -> None:
    if error is not None:
        driver.logger.error(
            "Encountered exception during execution:",
            exc_info=(type(error), error, error.__traceback__),
        )


# -- the sync flow run -------------------------------------------------------------------


def _invalid(error: BaseException) -> State:
    return Failed(f"Validation of flow parameters failed with error: {error}", exception=error)


def run_flow(
    flow: _Flow,
    parameters: dict[str, Any],
    return_state: bool,
    wait_for: Any = None,
    invalid: BaseException | None = None,
) -> Any:
    """One flow run of ``flow``: settings and runner first, then the body, then the final state.

    A run given ``invalid`` parameters, or whose ``wait_for`` did not complete, ends without
    running the body.
    """
    run = _Run(flow, parameters)
    run.start()
    not_run = _invalid(invalid) if invalid is not None else not_ready(wait_for)
    if not_run is not None:
        return run.finish(run.driver(0), not_run, return_state)
    attempt = 0
    driver: _FlowRunDriver | None = None
    with sigterm_interrupts():
        try:
            while True:
                driver = run.driver(attempt)
                state, interrupt = _attempt(run, driver)
                if interrupt is not None:
                    break
                if not run.retry(driver, state, attempt):
                    break
                attempt += 1
        except BaseException as exc:  # between attempts: Ctrl-C in a retry delay, a runner
            run.abandon(driver, exc)
            raise
    if interrupt is not None:
        run.finish(driver, state, return_state=True)
        raise interrupt
    return run.finish(driver, state, return_state)


def _attempt(run: _Run, driver: _FlowRunDriver) -> tuple[State, BaseException | None]:
    crashed = start_runner(driver)
    if crashed is not None:
        return crashed, None
    token = _flow_run_driver.set(driver)
    value: Any = None
    error: BaseException | None = None
    try:
        try:
            value = _call_body(run, driver)
        except _FlowTimeout:
            return timed_out(driver, run.flow.timeout_seconds), None
        except Exception as exc:
            error = exc
        driver.wait_all()
    except BaseException as exc:  # Ctrl-C, SIGTERM
        return interrupted(driver, exc), exc
    finally:
        _flow_run_driver.reset(token)
    driver.runner.__exit__(None, None, None)
    _error_log(driver, error)
    return final_state(driver, value, error), None


def _call_body(run: _Run, driver: _FlowRunDriver) -> Any:
    from ._execution import TaskTimeout, _call_with_timeout, _install_print, _print_logger

    flow, timeout = run.flow, run.flow.timeout_seconds
    token = None
    if flow.log_prints:
        _install_print()
        token = _print_logger.set(driver.logger)
    try:
        if timeout is None:
            return flow._invoke(run.parameters)
        return _call_with_timeout(flow._invoke, run.parameters, timeout)
    except TaskTimeout:
        raise _FlowTimeout from None
    finally:
        if token is not None:
            _print_logger.reset(token)


# -- the async flow run ------------------------------------------------------------------


async def run_flow_async(
    flow: _Flow,
    parameters: dict[str, Any],
    return_state: bool,
    wait_for: Any = None,
    invalid: BaseException | None = None,
) -> Any:
    """`run_flow` for an ``async def`` flow: the body is awaited on the caller's event loop."""
    import asyncio

    run = _Run(flow, parameters)
    run.start()
    not_run = _invalid(invalid) if invalid is not None else await asyncio.to_thread(not_ready, wait_for)
    if not_run is not None:
        return run.finish(run.driver(0), not_run, return_state)
    attempt = 0
    driver: _FlowRunDriver | None = None
    try:
        while True:
            driver = run.driver(attempt)
            state, interrupt = await _attempt_async(run, driver)
            if interrupt is not None:
                break
            if not run.retry(driver, state, attempt):
                break
            attempt += 1
    except BaseException as exc:
        run.abandon(driver, exc)
        raise
    if interrupt is not None:
        run.finish(driver, state, return_state=True)
        raise interrupt
    return run.finish(driver, state, return_state)


async def _attempt_async(run: _Run, driver: _FlowRunDriver) -> tuple[State, BaseException | None]:
    import asyncio

    crashed = start_runner(driver)
    if crashed is not None:
        return crashed, None
    token = _flow_run_driver.set(driver)
    value: Any = None
    error: BaseException | None = None
    timeout = run.flow.timeout_seconds
    try:
        try:
            async with asyncio.timeout(timeout):
                value = await run.flow._invoke(run.parameters)
        except TimeoutError as exc:
            if timeout is not None and exc.__cause__ is None and isinstance(exc.__context__, asyncio.CancelledError):
                return timed_out(driver, run.flow.timeout_seconds), None
            error = exc
        except Exception as exc:
            error = exc
        await asyncio.to_thread(driver.wait_all)
    except BaseException as exc:
        return interrupted(driver, exc), exc
    finally:
        _flow_run_driver.reset(token)
    driver.runner.__exit__(None, None, None)
    _error_log(driver, error)
    return final_state(driver, value, error), None


def _retry_defaults(settings: Settings) -> tuple[int, float] | None:
    """The retries and delay of tasks that set neither, or None when no setting gives them."""
    defaults = (
        settings.get("tasks.default_retries", 0), float(settings.get("tasks.default_retry_delay_seconds", 0.0))
    )
    return None if defaults == (0, 0.0) else defaults


def _storage_options(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every installed storage's ``[storages.NAME]`` options, checked here, before any task runs."""
    from . import _sections

    installed = plugins.registered("result_storage")
    return {
        name: _sections.section_options("storages", name, installed[name].load(), settings)
        for name in settings.storages
        if name in installed
    }
