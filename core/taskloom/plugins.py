"""The plugin manager: entry points in the ``taskloom`` group, loaded through pluggy.

Plugins load once per process, on first need (a flow run, a registry look-up, the CLI), not
at ``import taskloom``. A plugin that fails to import is skipped, and the others keep working;
each flow run reports it once, in the flow's process (worker processes load plugins too, and
stay quiet about it), and ``taskloom plugins`` lists it.
"""

from __future__ import annotations

import logging
import os
import pkgutil
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import attrs
import pluggy

from . import _extras, hookspecs
from ._extras import install_hint as install_hint
from ._extras import known_sections as known_sections

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "Registration",
    "failures",
    "get_plugin_manager",
    "hookimpl",
    "lookup",
    "plugins",
    "register",
    "registered",
    "reset",
    "warn_once",
]

#: The major version of the hook API. A plugin may state the one it was built for as a
#: module attribute ``TASKLOOM_PLUGIN_API``; another major version is refused by name.
API_VERSION = 1
ENTRY_POINT_GROUP = "taskloom"

hookimpl = pluggy.HookimplMarker("taskloom")
log = logging.getLogger("taskloom.plugins")


KINDS = {
    "task_runner": "taskloom_register_task_runners",
    "result_storage": "taskloom_register_result_storages",
    "serializer": "taskloom_register_serializers",
    "log_sink": "taskloom_register_log_sinks",
}


class PluginError(Exception):
    """A plugin or a name it registers cannot be used; the message says why and what to do."""


@attrs.frozen
class PluginInfo:
    """An installed plugin: its entry point, distribution and what it registers."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    provides: dict[str, list[str]] = attrs.field(factory=dict)
    #: The hooks it implements, without the ``taskloom_`` prefix.
    hooks: list[str] = attrs.field(factory=list)


@attrs.frozen
class PluginFailure:
    """An entry point that could not be used, and the one-line reason."""

    name: str
    value: str
    distribution: str | None
    reason: str


@attrs.frozen
class Registration:
    """One registered name: its factory and the plugin and distribution that gave it."""

    kind: str
    name: str
    factory: Any
    plugin: str
    distribution: str | None
    conflicts: tuple[str, ...] = ()

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing it if it was given as ``"module:attribute"``."""
        if self.conflicts:
            raise PluginError(
                f"The {self.kind.replace('_', ' ')} name {self.name!r} is registered by more "
                f"than one distribution ({', '.join(self.conflicts)}): uninstall one, or "
                "switch one off with TASKLOOM_DISABLE_PLUGINS."
            )
        if not isinstance(self.factory, str):
            return self.factory  # type: ignore[no-any-return]
        try:
            obj: Any = pkgutil.resolve_name(self.factory)
        except Exception as exc:
            raise PluginError(
                f"{self.kind.replace('_', ' ').capitalize()} {self.name!r} from plugin "
                f"{self.plugin!r} could not be imported ({self.factory}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return obj  # type: ignore[no-any-return]

    @property
    def attribute_name(self) -> str | None:
        if isinstance(self.factory, str):
            return self.factory.rpartition(":")[2].rpartition(".")[2]
        return getattr(self.factory, "__name__", None)


class _CorePlugin:
    """The innermost implementation of the execution hook: run the user's function."""

    @hookimpl(trylast=True)
    def taskloom_task_run_execute(self, task_run: Any, call: Callable[[], Any]) -> Any:
        return call()


class _State:
    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.infos: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.registry: dict[str, dict[str, Registration]] | None = None
        self.wraps_execution = False
        self.tracing = False


_state = _State()
_lock = threading.RLock()


def _disabled() -> set[str]:
    raw = os.environ.get("TASKLOOM_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, loading the ``taskloom`` entry points on first call."""
    pm = _state.pm
    if pm is not None:
        return pm
    with _lock:
        if _state.pm is None:
            _state.pm = _start()
        return _state.pm


def _start() -> pluggy.PluginManager:
    from importlib.metadata import entry_points

    pm = pluggy.PluginManager("taskloom")
    pm.add_hookspecs(hookspecs)
    pm.register(_CorePlugin(), name="taskloom-core")
    disabled = _disabled()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if ep.name in disabled or (dist and dist in disabled) or pm.has_plugin(ep.name):
            continue
        reason = None
        try:
            module = ep.load()
            api = getattr(module, "TASKLOOM_PLUGIN_API", API_VERSION)
            if not isinstance(api, int) or isinstance(api, bool) or api != API_VERSION:
                reason = (
                    f"built for plugin API {api}, this taskloom has API {API_VERSION}"
                    if isinstance(api, int)
                    else f"its TASKLOOM_PLUGIN_API is {api!r}, which is not a whole number "
                    f"(this taskloom has API {API_VERSION})"
                )
            else:
                pm.register(module, name=ep.name)  # raises for a hook that does not match its spec
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            _state.failures.append(PluginFailure(ep.name, ep.value, dist, reason))
            log.debug("Plugin %r (%s) is skipped: %s", ep.name, ep.value, reason)
            continue
        hooks = sorted(c.name.removeprefix("taskloom_") for c in pm.get_hookcallers(module) or ())
        _state.infos[ep.name] = PluginInfo(ep.name, ep.value, dist, version, hooks=hooks)
    if os.environ.get("TASKLOOM_TRACE_HOOKS", "").lower() in ("1", "true", "yes"):
        trace_log = logging.getLogger("taskloom.hooks")
        pm.trace.root.setwriter(lambda msg: trace_log.info(msg.rstrip()))
        pm.enable_tracing()
        _state.tracing = True
    _registrations_changed(pm)
    return pm


def register(plugin: object, name: str | None = None) -> None:
    """Register an object with hook implementations in this process (tests, notebooks).

    Plugins installed with pip need no call: their entry points load by themselves. An object
    registered here is known only in this process, not on Dask or Ray workers.
    """
    pm = get_plugin_manager()
    with _lock:
        pm.register(plugin, name=name)
        _registrations_changed(pm)


def unregister(plugin: object) -> None:
    """Undo `register`."""
    pm = get_plugin_manager()
    with _lock:
        pm.unregister(plugin)
        _registrations_changed(pm)


def _registrations_changed(pm: pluggy.PluginManager) -> None:
    _state.registry = None
    _state.wraps_execution = len(pm.hook.taskloom_task_run_execute.get_hookimpls()) > 1


def observed(hook_name: str) -> Any:
    """A caller of the lifecycle hook ``hook_name`` taking its arguments by position, in the
    hook's order, or None if no plugin implements it.

    The driver calls observer hooks for every state change, so this is on the per-task hot
    path: a hook nobody implements is skipped, and plain implementations (no wrappers) are
    called directly in pluggy's order; one that takes every argument in order is the caller
    itself (pluggy's dispatch costs many times a direct call). Traced hooks and wrappers
    keep pluggy's caller, so tracing and wrapping see every call.
    """
    caller = getattr(get_plugin_manager().hook, hook_name)
    names: tuple[str, ...] = tuple(caller.spec.argnames) if caller.spec else ()
    impls = caller.get_hookimpls()
    if _state.tracing or any(i.hookwrapper or i.wrapper for i in impls):
        return lambda *args: caller(**dict(zip(names, args, strict=True)))
    if not impls:
        return None
    functions: list[Callable[..., Any]] = []
    for impl in reversed(impls):  # pluggy calls the last registered (and tryfirst) first
        wanted = tuple(impl.argnames)
        if wanted == names:
            functions.append(impl.function)
        else:
            functions.append(_picking(impl.function, [names.index(n) for n in wanted]))
    if len(functions) == 1:
        return functions[0]

    def call_each(*args: Any) -> None:
        for function in functions:
            function(*args)

    return call_each


def _picking(function: Callable[..., Any], positions: list[int]) -> Callable[..., Any]:
    """``function`` called with the arguments at ``positions`` (an impl taking fewer)."""

    def call(*args: Any) -> Any:
        return function(*[args[i] for i in positions])

    return call


def execution_hook() -> Any:
    """The caller of ``taskloom_task_run_execute``, or None when no plugin wraps task runs
    (the engine then calls the task itself: asked once per run)."""
    if _state.pm is None:
        get_plugin_manager()
    if not _state.wraps_execution:
        return None
    return _state.pm.hook.taskloom_task_run_execute  # type: ignore[union-attr]


def _build_registry() -> dict[str, dict[str, Registration]]:
    pm = get_plugin_manager()
    registry: dict[str, dict[str, Registration]] = {}
    for kind, hook_name in KINDS.items():
        names: dict[str, Registration] = {}
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            try:
                provided: Mapping[str, Any] = impl.function() or {}
            except Exception as exc:
                log.warning("Plugin %r failed in %s: %s", impl.plugin_name, hook_name, exc)
                continue
            info = _state.infos.get(impl.plugin_name)
            dist = info.distribution if info is not None else impl.plugin_name
            if info is not None:
                info.provides.setdefault(kind, []).extend(provided)
            for name, factory in provided.items():
                if name in names:
                    first = names[name]
                    owners = first.conflicts or (first.distribution or first.plugin,)
                    names[name] = attrs.evolve(first, conflicts=(*owners, dist or impl.plugin_name))
                else:
                    names[name] = Registration(kind, name, factory, impl.plugin_name, dist)
        registry[kind] = names
    return registry


def registered(kind: str) -> dict[str, Registration]:
    """Every name registered for ``kind`` (``"task_runner"``, ``"result_storage"``, ...)."""
    registry = _state.registry
    if registry is None:
        with _lock:
            if _state.registry is None:
                _state.registry = _build_registry()
            registry = _state.registry
    return registry[kind]


def lookup(kind: str, name: str) -> Registration:
    """The registration of ``name``; an unknown one raises `PluginError` naming what exists."""
    names = registered(kind)
    if name in names:
        return names[name]
    label = kind.replace("_", " ")
    known = ", ".join(repr(n) for n in sorted(names)) or "none"
    message = f"Unknown {label} {name!r}. Installed {label}s: {known}."
    hint = install_hint(name)
    if hint:
        message += f" To get {name!r}, run: {hint}"
    if _state.failures:
        message += " Plugins that failed to load: " + "; ".join(
            f"{f.name} ({f.reason})" for f in _state.failures
        )
    raise PluginError(message)


def plugins() -> list[PluginInfo]:
    """The plugins loaded in this process, with what each provides."""
    for kind in KINDS:
        registered(kind)
    return list(_state.infos.values())


def failures() -> list[PluginFailure]:
    """The entry points that could not be loaded, with the reason for each."""
    get_plugin_manager()
    return list(_state.failures)


def reset() -> None:
    """Forget the loaded plugins, so the next use loads them again (tests, after pip install)."""
    with _lock:
        global _state
        _state = _State()
        _extras.forget()


_warned: set[Hashable] = set()
_warned_lock = threading.Lock()


def warn_once(
    logger: logging.Logger, message: str, *args: Any, key: Hashable = None, **log: Any
) -> None:
    """Log ``message % args`` at WARNING the first time ``key`` is seen in this process.

    For a plugin's trouble that is not a reason to stop a flow (a history file it cannot
    write, an exporter that fails): a loop of flow runs should say it once, not on every
    run. ``key`` defaults to the message with its arguments; pass your own to say one thing
    once per plugin, or once per file. ``log`` goes to `logging.Logger.warning`
    (``exc_info=True``, ``stacklevel``...).
    """
    if key is None:
        key = (message, *args)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message, *args, **log)
