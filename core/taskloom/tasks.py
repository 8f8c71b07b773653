"""Tasks: functions that a flow hands to its runner.

``@task`` turns a function into a `Task`. Called inside a flow it runs at once and returns
the value; ``.submit()`` hands it to the flow's runner and returns a `TaskFuture`; ``.map()``
submits one run per element.
"""

from __future__ import annotations

import inspect
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._ctx import _flow_run_driver

if TYPE_CHECKING:
    from .futures import TaskFuture
    from .states import State

__all__ = ["Task", "task", "unmapped"]

P = ParamSpec("P")
R = TypeVar("R")


class unmapped:  # noqa: N801 - Prefect's spelling, which our users already write
    """Wrap an argument of ``.map()`` so that every run gets it whole instead of one element."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _task_key(fn: Callable[..., Any], name: str) -> str:
    ident = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', name)}:{name}"
    return f"{zlib.crc32(ident.encode()):08x}"


def describe_signature(name: str, signature: inspect.Signature) -> str:
    """``name(a, b=1, *rest)``: a signature as users wrote it, without annotations."""
    empty = inspect.Parameter.empty
    plain = signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty,
    )
    return f"{name}{plain}"


def _load_task(module: str, qualname: str) -> Task[..., Any]:
    obj: Any = sys.modules.get(module) or __import__(module, fromlist=["_"])
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


class Task(Generic[P, R]):
    """A function that runs as task runs: retried, logged and observed the same on every runner."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        runner_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"@task expects a function, but got {fn!r} ({type(fn).__name__})."
            )
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.description = description if description is not None else inspect.getdoc(fn)
        self.tags: frozenset[str] = frozenset(tags)
        self.runner_options: dict[str, Any] = dict(runner_options or {})
        self.task_key = f"{self.name}-{_task_key(fn, self.name)}"
        self._signature = inspect.signature(fn)
        params = self._signature.parameters.values()
        self._by_keyword = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        # For the common signature (no *args, **kwargs or positional-only), `bind` maps
        # arguments itself: inspect.Signature.bind costs more than the rest of a submit.
        self._positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._names = frozenset(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__name__ = self.name
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A task that is importable where it runs travels as a reference; one defined in a
        # script (``__main__``) or made by with_options() travels by value (cloudpickle).
        module = sys.modules.get(self.__module__)
        if module is not None and self.__module__ != "__main__":
            try:
                if _load_task(self.__module__, self.__qualname__) is self:
                    return (_load_task, (self.__module__, self.__qualname__))
            except AttributeError:
                pass
        return super().__reduce_ex__(protocol)

    def with_options(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        runner_options: Mapping[str, Any] | None = None,
    ) -> Task[P, R]:
        """A copy of this task with some options changed."""
        return Task(
            self.fn,
            name=name or self.name,
            description=description if description is not None else self.description,
            tags=self.tags if tags is None else tags,
            runner_options=self.runner_options if runner_options is None else runner_options,
        )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments as parameters by name, defaults included."""
        if self._by_keyword and len(args) <= len(self._positional):
            parameters = dict(zip(self._positional, args, strict=False))
            for name, value in kwargs.items():
                if name in parameters or name not in self._names:
                    break
                parameters[name] = value
            else:
                if len(parameters) < len(self._names):
                    for name, default in self._defaults.items():
                        parameters.setdefault(name, default)
                if len(parameters) == len(self._names):
                    return parameters
        # The general case, and every mistake: inspect explains it.
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"Task {self.name!r} got arguments that do not fit its signature "
                f"{describe_signature(getattr(self.fn, '__name__', self.name), self._signature)}: {exc}."
            ) from None
        bound.apply_defaults()
        return bound.arguments

    def _invoke(self, parameters: dict[str, Any]) -> R:
        """Call the function with parameters from `bind`, on whichever worker runs it."""
        if self._by_keyword:
            return self.fn(**parameters)  # type: ignore[call-arg]
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, param in self._signature.parameters.items():
            if name not in parameters:
                continue
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                args.append(parameters[name])
            elif param.kind is param.VAR_POSITIONAL:
                args.extend(parameters[name])
            elif param.kind is param.VAR_KEYWORD:
                kwargs.update(parameters[name])
            else:
                kwargs[name] = parameters[name]
        return self.fn(*args, **kwargs)  # type: ignore[arg-type]

    # -- running -------------------------------------------------------------------------

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:  # type: ignore[misc]
        """Run the task now, in this thread; inside a flow it is a task run of that flow."""
        driver = _flow_run_driver.get()
        if driver is None:
            return self.fn(*args, **kwargs)
        return driver.call(self, args, kwargs, return_state=return_state)

    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]: ...
    @overload
    def submit(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def submit(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:  # type: ignore[misc]
        """Hand a run of this task to the flow's runner and return its future at once."""
        driver = _flow_run_driver.get()
        if driver is None:
            raise RuntimeError(
                f"Task {self.name!r} was submitted outside a flow: .submit() needs a running "
                f"flow. Call {self.name}(...) to run it here, or submit it inside a @flow."
            )
        future = driver.submit(self, args, kwargs)
        if return_state:
            future.wait()
            return future.state
        return future

    def map(self, *args: Any, **kwargs: Any) -> list[TaskFuture[R]]:
        """Submit one run per element of the iterable arguments; `unmapped` ones go whole."""
        driver = _flow_run_driver.get()
        if driver is None:
            raise RuntimeError(
                f"Task {self.name!r} was mapped outside a flow: .map() needs a running flow."
            )
        return driver.map(self, args, kwargs)  # type: ignore[no-any-return]


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    runner_options: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(name=..., tags=[...], ...)``."""
    if __fn is None:
        return lambda fn: Task(fn, **options)
    return Task(__fn, **options)
