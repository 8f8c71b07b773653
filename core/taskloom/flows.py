"""Flows: functions whose calls are flow runs.

``@flow`` turns a function into a `Flow`. Calling it starts a flow run in this process: the
runner is chosen (code, CLI, environment, file, default), task runs are handed to it, and the
flow's final state follows Prefect's rule. The run itself lives in ``taskloom._flow_run``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from .tasks import describe_signature

if TYPE_CHECKING:
    from .runners import TaskRunner
    from .states import State

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")


def _default_flow_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "flow").replace("_", "-")


class Flow(Generic[P, R]):
    """A function whose calls are flow runs: a runner, task runs, a final state."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        task_runner: TaskRunner | str | type | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow expects a function, but got {fn!r} ({type(fn).__name__}).")
        self.fn = fn
        self.name = name or _default_flow_name(fn)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.task_runner = task_runner
        self._signature = inspect.signature(fn)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    def with_options(
        self, *, name: str | None = None, task_runner: TaskRunner | str | type | None = None
    ) -> Flow[P, R]:
        """A copy of this flow with some options changed."""
        return Flow(
            self.fn,
            name=name or self.name,
            description=self.description,
            task_runner=task_runner if task_runner is not None else self.task_runner,
        )

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

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:  # type: ignore[misc]
        """Run the flow: a new flow run, its final state, and its value (or its error)."""
        from ._flow_run import run_flow

        return run_flow(self, self.bind(args, kwargs), return_state)

    def _invoke(self, parameters: dict[str, Any]) -> Any:
        bound = self._signature.bind_partial()
        bound.arguments.update(parameters)
        return self.fn(*bound.args, **bound.kwargs)


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    task_runner: TaskRunner | str | type | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name=..., task_runner="sequential")``."""
    if __fn is None:
        return lambda fn: Flow(fn, **options)
    return Flow(__fn, **options)
