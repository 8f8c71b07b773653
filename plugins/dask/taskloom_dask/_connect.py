"""Starting a cluster or connecting to one: the only place that knows cluster classes.

A runner without an address starts a temporary cluster (a `distributed.LocalCluster` unless
told otherwise) and closes it at the end of the flow run; a runner with an address connects a
client to that scheduler and leaves the cluster running.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
from typing import Any

logger = logging.getLogger("taskloom.task_runner.dask")

LOCAL_CLUSTER = "distributed.deploy.local.LocalCluster"

#: A temporary LocalCluster stays on this machine's loopback, with a dashboard on a free port
#: (8787 may be taken) and task runs in worker processes. Each is used unless the user's
#: cluster_kwargs set it.
LOCAL_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
    "processes": True,
}
#: A small footprint unless the user sizes the cluster (n_workers or threads_per_worker).
LOCAL_SIZE: dict[str, Any] = {"n_workers": 2, "threads_per_worker": 1}
#: How long connecting waits for a running scheduler's dashboard page to answer.
DASHBOARD_CHECK_SECONDS = 1.0


class DaskConnectionError(ConnectionError):
    """The scheduler at the runner's address did not answer in time."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_cluster_class(spec: type | str | None) -> type:
    """The cluster class named by ``spec``: a class, ``"pkg.mod.Class"`` or ``"pkg.mod:Class"``."""
    if spec is None:
        from distributed import LocalCluster

        return LocalCluster
    if isinstance(spec, type):
        return spec
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(
            f"cluster_class {spec!r} is not a dotted class path: write it as "
            "'package.module.ClassName', e.g. 'dask_jobqueue.SLURMCluster'."
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        package = module_name.split(".")[0]
        raise ImportError(
            f"cluster_class {spec!r} could not be imported ({type(exc).__name__}: {exc}); "
            f"install the package that provides it (e.g. pip install {package.replace('_', '-')})."
        ) from None
    if not isinstance(obj, type):
        raise TypeError(f"cluster_class {spec!r} names a {type(obj).__name__}, not a class.")
    return obj  # type: ignore[no-any-return]


def cluster_kwargs_for(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the cluster class gets: the user's, plus ours for a LocalCluster
    (or a subclass: only those of ours that its ``__init__`` accepts)."""
    from distributed import LocalCluster

    if not issubclass(cls, LocalCluster):
        return dict(given)
    ours = dict(LOCAL_DEFAULTS)
    if not any(key in given for key in LOCAL_SIZE):
        ours.update(LOCAL_SIZE)
    accepted = _keywords(cls)
    if accepted is not None:
        ours = {key: value for key, value in ours.items() if key in accepted}
    return {**ours, **given}


def _keywords(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` accepts by name; None if it takes any (``**kwargs``)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _adapt(cluster: Any, adapt_kwargs: dict[str, Any]) -> None:
    """``cluster.adapt(**adapt_kwargs)``, awaited on the cluster's loop if it is ``async def``."""
    result = cluster.adapt(**adapt_kwargs)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        sync = getattr(cluster, "sync", None)
        sync(wait) if sync is not None else asyncio.run(wait())


def _log_dashboard(link: str | None, local: bool) -> None:
    if not link:
        return
    hint = ""
    if local and importlib.util.find_spec("bokeh") is None:
        hint = " (its plots need bokeh: pip install 'taskloom-dask[dashboard]')"
    logger.info("The Dask dashboard is available at %s%s", link, hint)


def start_cluster(
    cluster_class: type | str | None,
    cluster_kwargs: dict[str, Any],
    adapt_kwargs: dict[str, Any] | None,
    client_kwargs: dict[str, Any],
) -> tuple[Any, Any]:
    """Start a temporary cluster and a client on it; return (cluster, client)."""
    from distributed import Client

    cls = resolve_cluster_class(cluster_class)
    logger.info("Creating a new Dask cluster with `%s`", class_path(cls))
    cluster = cls(**cluster_kwargs_for(cls, cluster_kwargs))
    try:
        if adapt_kwargs is not None:
            _adapt(cluster, adapt_kwargs)
        client = Client(cluster, **client_kwargs)  # type: ignore[no-untyped-call]
    except BaseException:
        cluster.close()
        raise
    _log_dashboard(getattr(cluster, "dashboard_link", None), local=True)
    return cluster, client


def connect(address: str, client_kwargs: dict[str, Any]) -> Any:
    """A client on the running scheduler at ``address``; a silent address fails in a timeout."""
    import dask
    from distributed import Client

    logger.info("Connecting to an existing Dask cluster at %s", address)
    timeout = client_kwargs.get("timeout") or dask.config.get("distributed.comm.timeouts.connect")
    seconds = dask.utils.parse_timedelta(timeout, "s")
    try:
        client = Client(address, **client_kwargs)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskConnectionError(
            f"Could not connect to the Dask scheduler at {address} within {seconds:g} s "
            f"({type(exc).__name__}: {exc}); check that it runs and is reachable from here, "
            "or leave address unset to start a temporary local cluster."
        ) from exc
    if logger.isEnabledFor(logging.INFO):  # the link is checked only to be shown
        _log_dashboard(_dashboard_link(client), local=False)
    return client


def _dashboard_link(client: Any) -> str | None:
    """The scheduler's dashboard link, or None when it serves none (``--no-dashboard``).

    `Client.dashboard_link` is made from the scheduler's HTTP port, which a scheduler started
    with ``--no-dashboard`` still opens (for health checks and metrics) without the dashboard
    pages. So the link is asked for once (one second at most); a link that cannot be checked
    is not shown.
    """
    import urllib.error
    import urllib.request

    try:
        link = client.dashboard_link
    except Exception:  # no HTTP server at all
        return None
    if not link:
        return None
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
    try:
        with direct.open(link, timeout=DASHBOARD_CHECK_SECONDS):
            return str(link)
    except (urllib.error.URLError, OSError, ValueError):  # 404 (no dashboard), unreachable
        return None
