"""`DaskTaskRunner`: task runs on a Dask cluster, temporary or existing.

The runner only moves task runs: each becomes one Dask task that calls taskloom's engine on a
worker (`_worker.run_on_worker`), so states, logs, hooks and failures mean what they mean on
every runner. Its options are plain keyword arguments, so the configuration file, the
environment (``TASKLOOM_RUNNERS_DASK_ADDRESS``, dicts as JSON) and ``--runner-option`` set them
by name.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskloom.runners import Capability, TaskRunCall, TaskRunner

if TYPE_CHECKING:
    from ._handles import RunHandle
    from ._session import Session

__all__ = ["DaskTaskRunner"]

# The client of the Dask runner of the flow run in this context: what get_dask_client()
# gives to a task called directly in the flow's body.
active_client: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "taskloom_dask_client", default=None
)


def _mapping(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(
            f"DaskTaskRunner option {name} must be a dict of keyword arguments "
            f"(JSON such as '{{\"n_workers\": 4}}' in the environment or on the command line), "
            f"got {value!r}."
        )
    return dict(value)


class DaskTaskRunner(TaskRunner):
    """Runs task runs on Dask: a temporary cluster started for the flow run, or a running one.

    ``address`` connects to a running scheduler (``"tcp://10.0.0.5:8786"``) and leaves it
    running after the flow. Without it, the runner starts ``cluster_class`` (a class or a dotted
    path such as ``"dask_jobqueue.SLURMCluster"``; `distributed.LocalCluster` by default) with
    ``cluster_kwargs``, calls ``cluster.adapt(**adapt_kwargs)`` when given, and closes the
    cluster when the flow run ends. A LocalCluster binds to 127.0.0.1 with its dashboard on a
    free port, and has two single-threaded worker processes unless ``cluster_kwargs`` sizes it.
    ``client_kwargs`` go to `distributed.Client` (e.g. ``{"timeout": "10s"}``).
    ``performance_report_path`` saves Dask's performance report of the flow run there (an HTML
    file; it needs bokeh, ``pip install 'taskloom-dask[dashboard]'``).

    A task's ``runner_options`` go to `Client.submit`: ``workers``, ``resources``,
    ``priority``, ``retries``, ``allow_other_workers``, ``fifo_timeout``.
    """

    name = "dask"
    concurrency = "parallel"
    capabilities = Capability.LIVE_EVENTS | Capability.CANCEL | Capability.REMOTE_RESULTS

    def __init__(
        self,
        address: str | None = None,
        cluster_class: type | str | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        performance_report_path: str | None = None,
    ) -> None:
        cluster_kwargs = _mapping("cluster_kwargs", cluster_kwargs)
        adapt_kwargs = _mapping("adapt_kwargs", adapt_kwargs)
        client_kwargs = _mapping("client_kwargs", client_kwargs)
        if address is not None and not isinstance(address, str):
            raise TypeError(f"DaskTaskRunner address must be a string, got {address!r}.")
        if address and (cluster_class is not None or cluster_kwargs or adapt_kwargs):
            given = [
                name
                for name, value in (
                    ("cluster_class", cluster_class),
                    ("cluster_kwargs", cluster_kwargs),
                    ("adapt_kwargs", adapt_kwargs),
                )
                if value
            ]
            raise ValueError(
                f"DaskTaskRunner got address={address!r} and {', '.join(given)}: give an address "
                "to use a running cluster, or cluster options to start a new one, not both."
            )
        if client_kwargs and client_kwargs.get("asynchronous"):
            raise ValueError(
                "DaskTaskRunner needs a synchronous Dask client: remove asynchronous=True "
                "from client_kwargs."
            )
        self.address = address or None
        self.cluster_class = cluster_class
        self.cluster_kwargs = cluster_kwargs
        self.adapt_kwargs = adapt_kwargs
        self.client_kwargs = client_kwargs
        if performance_report_path is not None and not isinstance(performance_report_path, str):
            raise TypeError(
                f"DaskTaskRunner performance_report_path must be a path (a string), got {performance_report_path!r}."
            )
        self.performance_report_path = performance_report_path or None
        self._report: Any = None
        self._session: Session | None = None
        self._token: contextvars.Token[Any] | None = None

    @property
    def remote_workers(self) -> bool:  # type: ignore[override]
        """Workers may be on other hosts: a running cluster's address, or a cluster class other
        than LocalCluster (dask-jobqueue, dask-kubernetes...)."""
        if self.address:
            return True
        cls = self.cluster_class
        if cls is None:
            return False
        name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        return name.replace(":", ".").rsplit(".", 1)[-1] != "LocalCluster"

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> DaskTaskRunner:
        if self._session is not None:
            raise RuntimeError(f"{self!r} is already started; use duplicate() for another run.")
        from ._connect import connect, start_cluster
        from ._session import Session

        # Our client is not made the process's default Dask client, unless asked.
        client_kwargs = {"set_as_default": False, **(self.client_kwargs or {})}
        if self.address:
            cluster, client = None, connect(self.address, client_kwargs)
        else:
            cluster, client = start_cluster(
                self.cluster_class, self.cluster_kwargs or {}, self.adapt_kwargs, client_kwargs
            )
        try:
            self._session = Session(client, cluster)
        except BaseException:
            client.close()
            if cluster is not None:
                cluster.close()
            raise
        self._token = active_client.set(client)
        if self.performance_report_path:
            self._start_report(client)
        return self

    def _start_report(self, client: Any) -> None:
        import importlib.util

        from distributed import performance_report

        if importlib.util.find_spec("bokeh") is None:
            self.__exit__(None, None, None)
            raise ImportError(
                "DaskTaskRunner performance_report_path needs bokeh to write the report: "
                "pip install 'taskloom-dask[dashboard]'."
            )
        report = performance_report(filename=self.performance_report_path)  # type: ignore[no-untyped-call]
        with client.as_current():  # our client is not the default one: the report finds it so
            report.__enter__()  # type: ignore[no-untyped-call]
        self._report = report

    def _save_report(self, client: Any) -> None:
        report, self._report = self._report, None
        try:
            with client.as_current():
                report.__exit__(None, None, None)
        except Exception as exc:  # the flow's own outcome matters more than its report
            from ._connect import logger

            logger.warning(
                "The Dask performance report could not be saved to %s: %s: %s",
                self.performance_report_path, type(exc).__name__, exc,
            )

    def __exit__(self, *exc_info: object) -> None:
        session, self._session = self._session, None
        if self._report is not None and session is not None:
            self._save_report(session.client)
        if self._token is not None:
            try:
                active_client.reset(self._token)
            except ValueError:  # exited in another context than entered
                pass
            self._token = None
        if session is not None:
            session.close(cancel=exc_info[0] is not None)

    # -- the client and cluster, while started -------------------------------------------

    @property
    def client(self) -> Any:
        """The `distributed.Client` of the running flow run (None when not started)."""
        return self._session.client if self._session is not None else None

    @property
    def cluster(self) -> Any:
        """The cluster this runner started (None when connected to an address or not started)."""
        return self._session.cluster if self._session is not None else None

    # -- submitting ----------------------------------------------------------------------

    def _started(self) -> Session:
        if self._session is None:
            raise RuntimeError(
                f"{self!r} is not started: use it as a flow's task_runner, or enter it with "
                "'with runner:' before submitting."
            )
        return self._session

    def submit(self, call: TaskRunCall) -> RunHandle:
        return self._started().submit(call)

    def map(self, calls: Sequence[TaskRunCall]) -> list[RunHandle]:  # type: ignore[override]
        return self._started().map(calls)
