"""`RayTaskRunner`: task runs as Ray tasks, on a private local Ray or on a running cluster.

The runner only moves calls: each task run becomes one Ray task that calls the engine's
`run_task_call` on a worker (see `_worker`), upstream futures travel as ``ObjectRef``
arguments that Ray resolves on the worker, and the returned `TaskRunOutcome` carries the
run's states and logs back to the flow's process, which replays them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskloom.runners import (
    CallEncoder,
    Capability,
    NativeFuture,
    RemoteResults,
    TaskRunCall,
    TaskRunner,
    upstream_handles,
)

from ._collect import Collector
from ._connect import RaySession, open_session, split_address
from ._handles import RayTaskFuture
from ._watch import ClusterWatch
from .options import current_remote_options

__all__ = ["RayTaskRunner"]


def _is_native(native: Any) -> bool:
    return type(native) is RayTaskFuture


def _freeze(value: Any) -> Any:
    """A hashable stand-in for an options value, to cache one remote function per options."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))
    return value


class RayTaskRunner(TaskRunner):
    """Runs each task run as a Ray task.

    ``address=None`` starts a private local Ray for the flow run (on 127.0.0.1, without the
    dashboard) and shuts it down afterwards; an address (``ray://host:10001``, ``auto`` or
    ``host:6379``) connects to a running cluster and leaves it running. ``init_kwargs`` go to
    ``ray.init`` (``{"num_cpus": 2}``, ``{"runtime_env": {...}}``). A process that is already
    connected to Ray uses that connection and leaves it open.

    Per task, ``runner_options`` (``num_cpus``, ``num_gpus``, ``memory``, ``resources``,
    ``runtime_env``, ``max_retries``, ...) and `taskloom_ray.remote_options` go to Ray's
    ``.options(...)``. ``capture_prints`` turns ``print()`` in a task into the run's log lines;
    ``connect_timeout`` bounds the wait for an address that does not answer.
    """

    name = "ray"
    concurrency = "parallel"
    capabilities = Capability.CANCEL | Capability.REMOTE_RESULTS

    def __init__(
        self,
        address: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
        *,
        capture_prints: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        self.address = None if address in (None, "", "local") else address
        self.init_kwargs: dict[str, Any] = dict(init_kwargs or {})
        self.capture_prints = capture_prints
        self.connect_timeout = connect_timeout
        self._session: RaySession | None = None
        self._watch: ClusterWatch | None = None  # notices a lost head or node (see _watch)
        self._remote: Any = None  # the remote function of task runs
        self._remote_alone: Any = None  # the same, in a worker process ended after the run
        self._with_options: dict[Any, Any] = {}
        self._encoder = CallEncoder("Ray workers", log_prints=capture_prints)
        self._remote_results = RemoteResults()
        self._collector: Collector | None = None  # settles the runs (see _collect)

    @property
    def remote_workers(self) -> bool:  # type: ignore[override]
        """A running cluster's address may have nodes on other hosts; a private Ray has not."""
        return self.address is not None

    # -- the context manager: start or connect, then undo only that ------------------------

    def __enter__(self) -> RayTaskRunner:
        session = open_session(self.address, self.init_kwargs, self.connect_timeout)
        from . import _worker

        ray = session.ray
        try:
            # max_retries=0: a lost worker is reported at once, and the engine's own retries
            # (the task's `retries`) decide what happens next, with their states and logs.
            # num_returns=2: what the flow's process receives, and the whole outcome (see _worker).
            self._remote = ray.remote(**_REMOTE)(_worker.run_call)
            self._remote_alone = ray.remote(**_REMOTE, max_calls=1)(_worker.run_call_alone)
        except BaseException:
            session.close()
            raise
        self._session = session
        collector = self._collector = Collector(ray)
        self._watch = _watch_cluster(session, collector)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None and (self._watch is None or self._watch.lost is None):
            # Results something still refers to come here before a private Ray goes away
            # (a lost head's went with it: asking would wait on a connection being closed).
            self._remote_results.fetch_referenced()
        self._remote_results = RemoteResults()
        collector, self._collector = self._collector, None
        if collector is not None:
            collector.stop()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()  # first: closing a private Ray is not losing it
        session, self._session = self._session, None
        self._remote = self._remote_alone = None
        self._with_options.clear()
        self._encoder = CallEncoder("Ray workers", log_prints=self.capture_prints)
        if session is not None and (watch is None or watch.lost is None):
            session.close()  # a lost head's watch closes it, without keeping the exit waiting

    # -- submitting ------------------------------------------------------------------------

    def _remote_for(self, call: TaskRunCall) -> Any:
        """The remote function with this run's Ray options (cached per distinct options)."""
        alone = call.task.timeout_seconds is not None
        remote = self._remote_alone if alone else self._remote
        if remote is None:
            raise RuntimeError(f"{self!r} was used outside a flow run (it is not started).")
        # A crash retry is handed over from a timer thread, in the context its first submit
        # ran in (the core keeps it for runs of a task with retries): the same options.
        extra = current_remote_options()
        own = call.task_run.runner_options
        watch = self._watch
        avoid = watch.avoid if watch is not None else None
        if not extra and not own and avoid is None:
            return remote
        options = {**extra, **own} if extra else own
        if avoid is not None and "label_selector" not in options and "scheduling_strategy" not in options:
            # A node died: Ray may still hold a lease request at it, which the last task of
            # the same shape would wait on (minutes); a selector that avoids it is a shape
            # of its own, and keeps the run off the dead node.
            options = {**options, "label_selector": {"ray.io/node-id": avoid}}
        key = (alone, _freeze(options))
        cached = self._with_options.get(key)
        if cached is None:
            try:
                if "max_calls" in options:
                    # Ray takes max_calls only in ray.remote(...), not in .options(...).
                    remote = self._decorated(alone, options["max_calls"])
                    options = {k: v for k, v in options.items() if k != "max_calls"}
                cached = remote.options(**options) if options else remote
            except (ValueError, TypeError) as exc:
                raise ValueError(_options_error(call, {**extra, **own}, exc)) from None
            self._with_options[key] = cached
        return cached

    def _decorated(self, alone: bool, max_calls: Any) -> Any:
        """The run function as a remote function with ``max_calls`` (a timed run keeps 1)."""
        from . import _worker

        assert self._session is not None
        function = _worker.run_call_alone if alone else _worker.run_call
        return self._session.ray.remote(**_REMOTE, max_calls=1 if alone else max_calls)(function)

    def submit(self, call: TaskRunCall) -> RayTaskFuture:
        remote = self._remote_for(call)
        upstream: tuple[Any, ...] = ()
        if call.upstream:
            upstream = tuple(upstream_handles(call, _is_native))
            args = [h.ref if type(h) is RayTaskFuture else h for h in upstream]
        else:
            args = []
        data = self._encoder.encode(call)  # a call that cannot go raises its own sentence
        watch = self._watch
        if watch is not None and watch.lost is not None:
            # The head is gone (a crash retry, or a run submitted after): crash it at once.
            return RayTaskFuture.lost(call, watch.lost, self._remote_results)
        try:
            if watch is not None and watch.note_nodes:
                state_ref, ref = remote.remote(data, *args, note_node=True)
            else:
                state_ref, ref = remote.remote(data, *args)
        except Exception as exc:
            if watch is not None and watch.lost is not None:
                return RayTaskFuture.lost(call, watch.lost, self._remote_results)
            raise _submit_error(call, exc) from None
        return RayTaskFuture(state_ref, ref, call, upstream, self._remote_results, watch, self._collector)

    def map(self, calls: Sequence[TaskRunCall]) -> list[NativeFuture]:
        """Submit every call without waiting: each ``.remote()`` returns at once."""
        submit = self.submit
        return [submit(call) for call in calls]


def _watch_cluster(session: RaySession, collector: Collector | None) -> ClusterWatch | None:
    """A started watch on the session's head and nodes; None where the address has no host:port."""
    try:
        scheme, host, port = split_address(session.address)
    except Exception:
        return None
    if not host or host == "?":
        return None
    # A Ray Client connection cannot read the node table or the key-value store.
    ray = session.ray if scheme != "ray" else None

    def disconnect() -> None:
        if collector is not None:
            collector.stop()  # first: it must not be inside a Ray call when Ray shuts down
        session.disconnect()

    watch = ClusterWatch(session.address, host, port, disconnect, ray)
    watch.start()
    return watch


#: How the run functions are made remote (see `RayTaskRunner.__enter__`).
_REMOTE: dict[str, Any] = {"max_retries": 0, "num_returns": 2}


def _options_error(call: TaskRunCall, options: Mapping[str, Any], exc: Exception) -> str:
    """Ray's refusal of ``.options(...)`` as one sentence naming the task and the option."""
    text = str(exc)
    unknown = [name for name in options if f"keyword {name} " in text or f"'{name}'" in text]
    if unknown:
        return (
            f"Task {call.task.name!r} has the runner option {unknown[0]!r}, which Ray does not "
            "accept: fix its runner_options or the remote_options(...) around its submit."
        )
    first = text.split(". ")[0].strip().rstrip(".")
    return (
        f"Task {call.task.name!r} has Ray options that Ray refuses ({first}): fix its "
        "runner_options or the remote_options(...) around its submit."
    )


def _submit_error(call: TaskRunCall, exc: Exception) -> Exception:
    """Ray's refusal of a call, as one sentence naming the task."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return TypeError(f"Task {call.task.name!r} cannot be sent to Ray workers ({first}).")
