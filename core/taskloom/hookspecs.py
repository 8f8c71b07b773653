"""The hooks a taskloom plugin can implement.

A plugin is a module named by an entry point in the ``taskloom`` group::

    [project.entry-points.taskloom]
    my-runner = "taskloom_myrunner.plugin"

whose functions carry ``@taskloom.hookimpl`` and a name from this page. Each hook says when it
is called, in which process, what it receives and what it returns. Hooks that *register*
things run once, in every process that needs the registry (the flow's process, and a worker
that looks up a serializer); *lifecycle* hooks run in the flow's process, in the order the
events of a run happened; the one *execution* hook runs wherever the task runs.

Names given to registration hooks are the names users write: ``task_runner="dask"``,
``result_storage="local-file"``. A factory may be given as a dotted string
(``"taskloom_dask:DaskTaskRunner"``), so that registering a runner does not import its engine:
it is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from argparse import _SubParsersAction

    from .config import Setting, Settings
    from .context import FlowRun, TaskRun
    from .states import State

    class TaskRunner(Protocol):
        """A flow run's task runner, a `taskloom.runners.TaskRunner`, named through this protocol
        for the type checker: the hook specs sit below the runners in the core's layers."""

        @property
        def name(self) -> str: ...

__all__ = [
    "Factory",
    "hookspec",
    "taskloom_add_commands",
    "taskloom_add_settings",
    "taskloom_flow_run_finished",
    "taskloom_flow_run_started",
    "taskloom_register_log_sinks",
    "taskloom_register_result_storages",
    "taskloom_register_serializers",
    "taskloom_register_task_runners",
    "taskloom_task_run_created",
    "taskloom_task_run_execute",
    "taskloom_task_run_state_changed",
]

hookspec = pluggy.HookspecMarker("taskloom")

#: A factory: a callable, or a ``"module:attribute"`` string naming one.
Factory = Callable[..., Any] | str


# -- registration: once per process, when the plugin manager first starts ------------------


@hookspec
def taskloom_register_task_runners() -> Mapping[str, Factory]:
    """Name the task runners this plugin provides.

    Called once per process, the first time a runner is looked up by name. Return a mapping
    of runner name to factory; the factory is called with the runner's options (from code,
    ``[runners.NAME]`` in config, ``TASKLOOM_RUNNERS_NAME_*`` or ``--runner-option``) and must
    return a `taskloom.runners.TaskRunner`. The class named by the factory is also what
    ``from taskloom.runners import ClassName`` imports.

    Two plugins that register the same name make that name unusable, with an error naming
    both distributions.
    """


@hookspec
def taskloom_register_result_storages() -> Mapping[str, Factory]:
    """Name the result storages this plugin provides (``"memory"``, ``"local-file"``, ...).

    Called once per process where a storage is looked up: the flow's process and a worker
    that persists a result. The factory is called with the options of the storage's own
    section, ``[storages.NAME]``, as keyword arguments (and ``path``, the ``results.path``
    setting, when it takes one and the section sets none) and returns an object with the
    `taskloom.results.ResultStorage` methods. One instance serves every run of the process
    that uses the same options, from several threads at once.
    """


@hookspec
def taskloom_register_serializers() -> Mapping[str, Factory]:
    """Name the result serializers this plugin provides (``"pickle"``, ``"json"``, ...).

    Called once per process where a serializer is looked up. The factory, called without
    arguments, returns an object with the `taskloom.results.Serializer` methods.
    """


@hookspec
def taskloom_register_log_sinks() -> Mapping[str, Factory]:
    """Name the log sinks this plugin provides (``"console"``, ``"file"``, ``"json"``).

    Called once, in the flow's process, when logging is first set up. The factory is called
    with the options of the sink's own section, ``[sinks.NAME]``, as keyword arguments (and
    ``level``, the ``logging.level`` in force, when it takes one) and returns a
    `logging.Handler`. Records reaching the handler carry ``flow_run_name``, ``flow_run_id``
    and, for task runs, ``task_run_name`` and ``task_run_id``. An exception the handler lets
    out is reported once and does not reach the code that logged.

    Without any plugin providing ``console``, the core prints through the standard library's
    ``logging`` in the same format.
    """


@hookspec
def taskloom_add_settings() -> list[Setting]:
    """Declare this plugin's own configuration keys, their types and defaults.

    Called once per process when settings are first read. Return a list of
    `taskloom.config.Setting`. The keys then validate in ``taskloom.toml``, in
    ``[tool.taskloom]`` and in the environment (``TASKLOOM_`` + the key in capitals), and
    appear in ``taskloom config``. Options of a runner, sink or storage need no declaring:
    they are its factory's parameters, read from ``[runners.NAME]``, ``[sinks.NAME]`` and
    ``[storages.NAME]``.
    """


@hookspec
def taskloom_add_commands(subparsers: _SubParsersAction[Any]) -> None:
    """Add sub-commands to the ``taskloom`` command line.

    Called once, in the CLI's process, before arguments are parsed. Add parsers with
    ``subparsers.add_parser(...)`` and set ``func=`` with ``set_defaults``; the function is
    called with the parsed `argparse.Namespace` and returns the exit code.
    """


# -- lifecycle: in the flow's process, in event order ---------------------------------------


@hookspec
def taskloom_flow_run_started(flow_run: FlowRun, task_runner: TaskRunner, settings: Settings) -> None:
    """A flow run was created and is about to run its body on ``task_runner``.

    Called in the flow's process, in the thread that runs the flow, before the task runner
    starts; for a subflow too (``flow_run.parent_flow_run_id`` is then set). ``settings``
    are the flow run's (`taskloom.config.Settings`, a plugin's own keys included), read
    once for it: use them rather than reading the files again. The return value is ignored.
    """


@hookspec
def taskloom_flow_run_finished(flow_run: FlowRun, state: State) -> None:
    """A flow run reached its final ``state``; its runner has shut down.

    Called in the flow's process, after every task run of the flow has settled.
    """


@hookspec
def taskloom_task_run_created(task_run: TaskRun, parameters: Mapping[str, Any]) -> None:
    """A task run was created, before it is handed to the runner.

    Called in the flow's process, in the thread that called ``.submit()`` or the task.
    ``parameters`` are the arguments bound to the task's parameter names as the caller gave
    them (futures of upstream runs still unresolved); do not change them.
    """


@hookspec
def taskloom_task_run_state_changed(task_run: TaskRun, old: State | None, new: State) -> None:
    """A task run moved from state ``old`` (None for its first) to ``new``.

    Called in the flow's process, in the order the changes happened for that run, whichever
    runner and worker ran it: the driver replays states it receives from workers. Calls for
    one task run never overlap and come in order. Calls for different task runs may come at
    once from different threads (on the thread runners, each worker delivers its own runs'
    states), so what an implementation shares between runs needs a lock, or operations that
    are atomic in CPython (a dict item set or popped, a deque append). Be quick: this is on
    every task run's path. ``new.is_terminal()`` says ``new`` is the run's last state (a final
    one, or ``NotReady``: an input did not complete). ``new.data`` may hold the run's result.
    """


# -- execution: wherever the task runs ------------------------------------------------------


@hookspec(firstresult=True)
def taskloom_task_run_execute(task_run: TaskRun, call: Callable[[], Any]) -> Any:
    """Run the user's function of ``task_run``: ``call()`` does it and returns its value.

    Called once per attempt, on the worker that runs the task (a thread of the flow's
    process, a spawned process, a Dask or Ray worker), inside the task run's context, so
    `taskloom.get_run_logger` works. Implement it as a pluggy wrapper::

        @hookimpl(wrapper=True)
        def taskloom_task_run_execute(task_run, call):
            started = time.perf_counter()
            try:
                return (yield)
            finally:
                record(task_run.name, time.perf_counter() - started)

    The core's own implementation is the innermost: it calls ``call()``. A wrapper may
    return another value or raise; what it returns becomes the task's result, what it
    raises fails the run. It runs only in processes where the plugin is installed: on a
    cluster, install it on the workers too.
    """
