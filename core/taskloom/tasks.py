"""Tasks: functions that a flow hands to its runner.

``@task`` turns a function into a `Task`. Called inside a flow it runs at once and returns
the value; ``.submit()`` hands it to the flow's runner and returns a `TaskFuture`; ``.map()``
submits one run per element.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._annotations import allow_failure, exponential_backoff, quote, tags, unmapped
from ._current import _flow_run_driver

if TYPE_CHECKING:
    from . import _options
    from .caching import task_input_hash
    from .futures import TaskFuture, TaskFutureList
    from .states import State

__all__ = [
    "Task",
    "allow_failure",
    "exponential_backoff",
    "quote",
    "tags",
    "task",
    "task_input_hash",
    "unmapped",
]

P = ParamSpec("P")
R = TypeVar("R")


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


def _check_reserved(owner: str, signature: inspect.Signature) -> None:
    """Calls take ``return_state`` and ``wait_for``: a function cannot have them as parameters."""
    for argument in ("return_state", "wait_for"):
        if argument in signature.parameters:
            raise TypeError(f"{owner}: {argument!r} is a reserved argument name and cannot be used.")


def _load_task(module: str, qualname: str) -> Task[..., Any]:
    obj: Any = sys.modules.get(module)
    if obj is None or getattr(getattr(obj, "__spec__", None), "_initializing", False):
        # Not imported yet, or being imported by another thread right now: import_module
        # takes the module's import lock, so this waits until the module is whole.
        obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


class Task(Generic[P, R]):
    """A function that runs as task runs: retried, logged and observed the same on every runner.

    Options are Prefect's: ``retries``, ``retry_delay_seconds`` (a number, a list, or a
    callable such as `exponential_backoff`), ``retry_jitter_factor``, ``retry_condition_fn``,
    ``timeout_seconds``, ``persist_result``, ``result_storage`` and ``result_serializer``
    (registered names or instances), ``cache_policy`` / ``cache_key_fn``,
    ``cache_expiration``, ``refresh_cache``, ``on_completion`` / ``on_failure`` /
    ``on_crashed`` hooks, ``task_run_name`` (a template such as ``"fetch-{city}"`` or a
    function), ``log_prints``, ``tags``, ``runner_options`` (a table per runner name,
    ``{"ray": {"num_gpus": 1}}``, each runner getting its own; or one flat table that
    whichever runner runs the task gets) and ``version``. Without ``retries`` or
    ``retry_delay_seconds``, the settings ``tasks.default_retries`` and
    ``tasks.default_retry_delay_seconds`` of the flow run apply.
    A wrong option fails here, naming the task and the option.
    """

    def __init__(self, fn: Callable[P, R], **options: Any) -> None:
        from . import _options

        self._init(fn, _options.given(_options.TaskOptions, "Task", fn, options))

    @classmethod
    def _from(cls, fn: Callable[P, R], given: _options.TaskOptions) -> Task[P, R]:
        """A task of ``fn`` with options already checked by name (`_options.given`)."""
        made = object.__new__(cls)
        made._init(fn, given)
        return made

    def _init(self, fn: Callable[P, R], given: _options.TaskOptions) -> None:
        from . import _options

        if not callable(fn):
            raise TypeError(
                f"@task expects a function, but got {fn!r} ({type(fn).__name__})."
            )
        self.fn = fn
        self.options = given  # as given: with_options() evolves it
        self.name: str = given.name or str(getattr(fn, "__name__", type(fn).__name__))
        owner = f"Task {self.name!r}"
        self.description = given.description if given.description is not None else inspect.getdoc(fn)
        self.tags: frozenset[str] = frozenset(given.tags)
        self.runner_options: dict[str, Any] = dict(given.runner_options or {})
        # {"ray": {...}, "dask": {...}}: each runner gets the table under its own name.
        self._runner_options_by_runner = bool(self.runner_options) and all(
            isinstance(v, Mapping) for v in self.runner_options.values()
        )
        self.task_key = f"{self.name}-{_task_key(fn, self.name)}"
        self._signature = inspect.signature(fn)
        _check_reserved(owner, self._signature)
        params = self._signature.parameters.values()
        self._by_keyword = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        # For the common signature (no *args, **kwargs or positional-only), `bind` maps
        # arguments itself: inspect.Signature.bind costs more than the rest of a submit.
        self._positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._names = frozenset(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        # Every parameter given by position, nothing else: the run's parameters at once.
        self._arity = len(self._positional) if self._by_keyword and len(self._positional) == len(self._names) else -1
        self.is_async = inspect.iscoroutinefunction(fn)

        # None: the flow run's tasks.default_retries / default_retry_delay_seconds apply.
        self.retries = _options.check_retries(owner, 0 if given.retries is None else given.retries)
        self.retry_delay_seconds = _options.check_delay(owner, given.retry_delay_seconds)
        self.version = _options.check_version(owner, given.version)
        self.retry_jitter_factor = _options.check_jitter(owner, given.retry_jitter_factor)
        self.retry_condition_fn = _options.check_callable(owner, "retry_condition_fn", given.retry_condition_fn)
        self.timeout_seconds = _options.check_timeout(owner, given.timeout_seconds)
        self.persist_result = _options.check_flag(owner, "persist_result", given.persist_result)
        self.result_storage = given.result_storage
        self.result_serializer = given.result_serializer
        self.cache_key_fn = _options.check_callable(owner, "cache_key_fn", given.cache_key_fn)
        self.cache_policy = given.cache_policy
        self.cache_expiration = _options.as_seconds(owner, "cache_expiration", given.cache_expiration)
        self.refresh_cache = _options.check_flag(owner, "refresh_cache", given.refresh_cache)
        self.on_completion = _options.check_hooks(owner, "on_completion", given.on_completion)
        self.on_failure = _options.check_hooks(owner, "on_failure", given.on_failure)
        self.on_crashed = _options.check_hooks(owner, "on_crashed", given.on_crashed)
        # Whether a run keeps its result (a cache needs it): True or False when this task
        # says, None when the flow run's `results.persist` decides (`_execution.wants_results`).
        self._keeps_results: bool | None = (
            True
            if self.cache_key_fn is not None or (self.cache_policy is not None and repr(self.cache_policy) != "NONE")
            else self.persist_result
        )
        self.task_run_name = _options.check_run_name(
            owner, given.task_run_name, self._names,
            describe_signature(getattr(fn, "__name__", self.name), self._signature),
        )
        self.log_prints = _options.check_flag(owner, "log_prints", given.log_prints)
        for option in ("result_storage", "result_serializer"):
            value = getattr(self, option)
            if value is not None and not isinstance(value, str) and not hasattr(
                value, "write" if option == "result_storage" else "dumps"
            ):
                raise TypeError(
                    f"{owner}: {option} must be a registered given.name or a "
                    f"{'storage' if option == 'result_storage' else 'serializer'} object, got {value!r}."
                )
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__name__ = self.name
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A task that is importable where it runs travels as a reference; one defined in a
        # script (``__main__``), in a module of the flow's own folder (marked by the wire
        # format) or made by with_options() travels by value (cloudpickle).
        module = sys.modules.get(self.__module__)
        if (
            module is not None
            and self.__module__ != "__main__"
            and not getattr(module, "__taskloom_by_value__", False)
        ):
            try:
                if _load_task(self.__module__, self.__qualname__) is self:
                    return (_load_task, (self.__module__, self.__qualname__))
            except AttributeError:
                pass
        return super().__reduce_ex__(protocol)

    def _runner_options_for(self, runner: Any) -> dict[str, Any]:
        """The options ``runner`` gets: its own table when they are given per runner name."""
        if not self._runner_options_by_runner:
            return self.runner_options
        name = getattr(runner, "name", None)
        own = self.runner_options.get(name) if isinstance(name, str) else None
        if own is None:
            from . import plugins

            runners = plugins.registered("task_runner")
            for key in self.runner_options:
                if key not in runners:
                    plugins.warn_once(
                        logging.getLogger("taskloom.engine"),
                        "Task %r: runner_options names %r, which is no installed runner, so no "
                        "runner gets those options; give each runner's options under its name, "
                        "such as {'dask': {'resources': {'GPU': 1}}}.",
                        self.name, key, key=("runner_options", self.name, key),
                    )
            return {}
        return dict(own)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (any option of `task`)."""
        from . import _options

        return type(self)._from(self.fn, _options.given(_options.TaskOptions, "with_options", self.fn, changes, self.options))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments as parameters by name, defaults included."""
        if len(args) == self._arity and not kwargs:
            return dict(zip(self._positional, args))  # noqa: B905 - the lengths are equal
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

    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Run the task now, in this thread; inside a flow it is a task run of that flow.

        In an async flow, calling an ``async def`` task gives an awaitable.
        """
        driver = _flow_run_driver.get()
        if driver is None:
            return self.fn(*args, **kwargs)
        if self.is_async and _in_event_loop():
            return driver.call_async(self, args, kwargs, return_state=return_state, wait_for=wait_for)
        return driver.call(self, args, kwargs, return_state=return_state, wait_for=wait_for)

    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]: ...
    @overload
    def submit(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def submit(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Hand a run of this task to the flow's runner and return its future at once.

        ``wait_for`` lists futures this run must wait for without taking their values.
        """
        driver = _flow_run_driver.get() or _nested_driver()
        if driver is None:
            raise RuntimeError(
                f"Task {self.name!r} was submitted outside a flow: .submit() needs a running "
                f"flow. Call {self.name}(...) to run it here, or submit it inside a @flow."
            )
        future = driver.submit(self, args, kwargs, wait_for=wait_for)
        if return_state:
            future.wait()
            return future.state
        return future

    def map(
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> TaskFutureList[R]:
        """Submit one run per element of the iterable arguments; return their futures as a
        `TaskFutureList` (a list with ``.wait()`` and ``.result()``).

        Arguments wrapped in `unmapped` or `quote`, and strings, bytes and dicts, go whole to
        every run; every other iterable is mapped over, and all must have the same length.
        Default values are not mapped over; iterables given through ``**kwargs`` are. A future
        or state given directly is mapped over its result.
        """
        driver = _flow_run_driver.get() or _nested_driver()
        if driver is None:
            raise RuntimeError(
                f"Task {self.name!r} was mapped outside a flow: .map() needs a running flow."
            )
        futures = driver.map(self, args, kwargs, wait_for=wait_for)
        if return_state:
            for future in futures:
                future.wait()
            return [future.state for future in futures]  # type: ignore[return-value]
        return futures  # type: ignore[no-any-return]


def _nested_driver() -> Any:
    """Inside a task run on a worker without the flow's driver: the driver of its child runs."""
    from ._current import _task_run_recorder, nested_driver

    if _task_run_recorder.get() is None:
        return None
    return nested_driver()  # bound by taskloom/__init__.py: the driver is a layer above


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    runner_options: Mapping[str, Any] | None = None,
    retries: int | None = None,
    retry_delay_seconds: Any = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: Callable[..., bool] | None = None,
    timeout_seconds: float | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    cache_policy: Any = None,
    cache_key_fn: Callable[..., str | None] | None = None,
    cache_expiration: Any = None,
    refresh_cache: bool | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    task_run_name: str | Callable[[], str] | None = None,
    log_prints: bool | None = None,
    version: str | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(name=..., retries=2, ...)``."""
    def make(fn: Any) -> Task[Any, Any]:
        from . import _options

        return Task._from(fn, _options.given(_options.TaskOptions, "@task", fn, options))

    return make if __fn is None else make(__fn)


def __getattr__(name: str) -> Any:
    # `from prefect.tasks import task_input_hash`, as Prefect users write it. It lives in
    # `caching`, imported on first use so that `import taskloom` stays light.
    if name == "task_input_hash":
        from .caching import task_input_hash

        return task_input_hash
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
