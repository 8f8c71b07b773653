"""Flows: functions whose calls are flow runs.

``@flow`` turns a function into a `Flow`. Calling it starts a flow run in this process: the
runner is chosen (code, CLI, environment, file, default), task runs are handed to it, and the
flow's final state follows Prefect's rule. The run itself lives in ``taskloom._flow_run``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from .tasks import _check_reserved, describe_signature

if TYPE_CHECKING:
    from . import _options
    from .runners import TaskRunner
    from .states import State

__all__ = ["Flow", "ParameterTypeError", "flow"]

P = ParamSpec("P")
R = TypeVar("R")


class ParameterTypeError(TypeError):
    """A flow parameter that cannot be made the type its annotation names (Prefect's name)."""


class Flow(Generic[P, R]):
    """A function whose calls are flow runs: a runner, task runs, a final state.

    Options: ``name``, ``description``, ``task_runner`` (a name, an instance or a class),
    ``retries`` and ``retry_delay_seconds`` (the body runs again), ``timeout_seconds``,
    ``flow_run_name`` (a template such as ``"report-{day}"`` or a function), ``log_prints``
    (for the flow and, unless they say otherwise, its tasks), ``persist_result``, and the
    ``on_completion`` / ``on_failure`` / ``on_crashed`` / ``on_cancellation`` hooks, called
    with ``(flow, flow_run, state)``, and ``version`` (a string of your choice; None unless
    given). With ``validate_parameters`` (the default), parameters annotated ``int``, ``float``
    or ``bool`` (or ``Optional`` of one) are coerced as on the command line: ``"3"`` becomes
    3, and a string that is not a number fails the flow run before its body starts.
    """

    def __init__(self, fn: Callable[P, R], **options: Any) -> None:
        from . import _options

        self._init(fn, _options.given(_options.FlowOptions, "Flow", fn, options))

    @classmethod
    def _from(cls, fn: Callable[P, R], given: _options.FlowOptions) -> Flow[P, R]:
        """A flow of ``fn`` with options already checked by name (`_options.given`)."""
        made = object.__new__(cls)
        made._init(fn, given)
        return made

    def _init(self, fn: Callable[P, R], given: _options.FlowOptions) -> None:
        from . import _options

        if not callable(fn):
            raise TypeError(f"@flow expects a function, but got {fn!r} ({type(fn).__name__}).")
        self.fn = fn
        self.options = given  # as given: with_options() evolves it
        self.name = given.name or getattr(fn, "__name__", "flow").replace("_", "-")
        owner = f"Flow {self.name!r}"
        self.description = given.description if given.description is not None else inspect.getdoc(fn)
        self.task_runner = given.task_runner
        self._signature = inspect.signature(fn)
        _check_reserved(owner, self._signature)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.retries = _options.check_retries(owner, given.retries)
        delay = _options.check_delay(owner, given.retry_delay_seconds)
        if delay is not None and not isinstance(delay, float):
            raise TypeError(f"{owner}: retry_delay_seconds of a flow must be a number of seconds, got {given.retry_delay_seconds!r}.")
        self.retry_delay_seconds = delay
        self.timeout_seconds = _options.check_timeout(owner, given.timeout_seconds)
        described = describe_signature(getattr(fn, "__name__", self.name), self._signature)
        self.flow_run_name = _options.check_run_name(owner, given.flow_run_name, self._signature.parameters, described)
        self.log_prints = _options.check_flag(owner, "log_prints", given.log_prints)
        self.persist_result = _options.check_flag(owner, "persist_result", given.persist_result)
        self.on_completion = _options.check_hooks(owner, "on_completion", given.on_completion)
        self.on_failure = _options.check_hooks(owner, "on_failure", given.on_failure)
        self.on_crashed = _options.check_hooks(owner, "on_crashed", given.on_crashed)
        self.on_cancellation = _options.check_hooks(owner, "on_cancellation", given.on_cancellation)
        self.version = _options.check_version(owner, given.version)
        self.validate_parameters = bool(_options.check_flag(owner, "validate_parameters", given.validate_parameters))
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (any option of `flow`)."""
        from . import _options

        return type(self)._from(self.fn, _options.given(_options.FlowOptions, "Flow.with_options", self.fn, changes, self.options))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments as the flow run's parameters; a mismatch is one clear error."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"Flow {self.name!r} got parameters that do not fit its signature "
                f"{describe_signature(self.__name__, self._signature)}: {exc}."
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Run the flow: a new flow run, its final state, and its value (or its error).

        A subflow may be given ``wait_for=[futures]``: it starts once they are final, and if
        one did not complete it does not run and ends ``NotReady``, as a task would.
        """
        parameters = self.bind(args, kwargs)
        invalid = None
        if self.validate_parameters:
            try:
                parameters = self._coerce(parameters)
            except ParameterTypeError as exc:
                invalid = exc
        if wait_for is not None:
            from ._current import _flow_run_driver

            if _flow_run_driver.get() is None:
                raise ValueError("Only flows run as subflows can wait for dependencies.")
        if self.is_async:
            from ._flow_run import run_flow_async

            return run_flow_async(self, parameters, return_state, wait_for, invalid)
        from ._flow_run import run_flow

        return run_flow(self, parameters, return_state, wait_for, invalid)

    def _coerce(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Parameters made the simple type their annotation names, as the CLI makes them:
        a string to int, float or bool, an int to float (Prefect's ``validate_parameters``,
        without pydantic). Other values are left as they are."""
        from .config import ConfigError, coerce

        for name, kind in self._kinds.items():
            value = parameters.get(name)
            if isinstance(value, str) and kind is not str:
                try:
                    parameters[name] = coerce(value, kind, f"Parameter {name!r} of flow {self.name!r}")
                except ConfigError as exc:
                    raise ParameterTypeError(str(exc)) from None
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                parameters[name] = float(value)
        return parameters

    def _invoke(self, parameters: dict[str, Any]) -> Any:
        bound = self._signature.bind_partial()
        bound.arguments.update(parameters)
        return self.fn(*bound.args, **bound.kwargs)

    @functools.cached_property
    def _kinds(self) -> dict[str, type]:
        """Parameters annotated int, float, bool or str (or Optional of one), by name."""
        import typing

        from ._sections import plain_type

        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:  # an annotation that does not resolve: nothing to coerce
            return {}
        hints.pop("return", None)
        kinds = {name: plain_type(hint) for name, hint in hints.items()}
        return {name: kind for name, kind in kinds.items() if kind in (int, float, bool, str)}


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    task_runner: TaskRunner | str | type | None = None,
    retries: int = 0,
    retry_delay_seconds: float | None = None,
    timeout_seconds: float | None = None,
    flow_run_name: str | Callable[[], str] | None = None,
    log_prints: bool | None = None,
    persist_result: bool | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    on_cancellation: Any = None,
    version: str | None = None,
    validate_parameters: bool = True,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name=..., task_runner="sequential")``."""
    def make(fn: Any) -> Flow[Any, Any]:
        from . import _options

        return Flow._from(fn, _options.given(_options.FlowOptions, "@flow", fn, options))

    return make if __fn is None else make(__fn)
