"""Starting, connecting and closing: what the Dask runner does with clusters."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import distributed
import psutil
import pytest

from taskloom import flow
from taskloom.testing import _tasks as t
from taskloom_dask import DaskTaskRunner

pytestmark = [pytest.mark.dask, pytest.mark.slow]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def runner_logs() -> Any:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("taskloom")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_seed_shape_on_a_temporary_cluster(runner_logs: list[logging.LogRecord]) -> None:
    """The seed's third example: two tasks at once in worker processes; the cluster goes away."""
    before = _children()
    seen: dict[str, Any] = {}

    @flow(task_runner=DaskTaskRunner())
    def my_flow3() -> Any:
        seen["workers"] = _children() - before
        a, b = t.interval.submit(1.5), t.interval.submit(1.5)
        return a.result(), b.result()

    (start_a, end_a, pid_a), (start_b, end_b, pid_b) = my_flow3()
    assert min(end_a, end_b) > max(start_a, start_b), "the two task runs did not overlap"
    assert os.getpid() not in (pid_a, pid_b), "task runs must run in worker processes"
    assert pid_a != pid_b, "two single-threaded workers run the two overlapping tasks"

    messages = [(r.name, r.getMessage()) for r in runner_logs if r.name == "taskloom.task_runner.dask"]
    assert messages[0] == (
        "taskloom.task_runner.dask",
        "Creating a new Dask cluster with `distributed.deploy.local.LocalCluster`",
    )
    assert messages[1][1].startswith("The Dask dashboard is available at http://127.0.0.1:")

    assert seen["workers"], "the runner started no worker process"
    deadline = time.monotonic() + 15
    while _alive(seen["workers"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(seen["workers"]), "the temporary cluster's processes outlived the flow"


def test_an_existing_cluster_is_left_running(local_cluster: Any) -> None:
    from distributed import Client

    address = local_cluster.scheduler_address
    runner = DaskTaskRunner(address=address)

    @flow(task_runner=runner)
    def uses_cluster() -> int:
        return t.add.submit(2, 3).result()

    assert uses_cluster() == 5
    assert runner.client is None, "the instance given to the flow is not started itself"
    with Client(address, timeout="10s", set_as_default=False) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        assert client.submit(sum, [1, 2], pure=False).result() == 3


def test_a_silent_address_fails_within_the_timeout_naming_it() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"

    @flow(task_runner=DaskTaskRunner(address=address, client_kwargs={"timeout": "2s"}))
    def unreachable() -> None:
        t.noop.submit()

    started = time.monotonic()
    state = unreachable(return_state=True)
    assert time.monotonic() - started < 30
    assert state.is_crashed(), state
    assert address in state.message
    assert "within 2 s" in state.message and "\n" not in state.message


def test_address_and_cluster_options_are_one_clear_error() -> None:
    with pytest.raises(ValueError) as info:
        DaskTaskRunner(address="tcp://127.0.0.1:8786", cluster_kwargs={"n_workers": 1})
    message = str(info.value)
    assert "address" in message and "cluster_kwargs" in message and "not both" in message
    assert "\n" not in message


def test_address_and_cluster_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_RUNNERS_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    monkeypatch.setenv("TASKLOOM_RUNNERS_DASK_ADAPT_KWARGS", '{"maximum": 2}')

    @flow(task_runner="dask")
    def configured() -> None:
        t.noop.submit()

    with pytest.raises(ValueError, match="not both"):
        configured()


def test_options_are_plain_keywords_that_duplicate() -> None:
    runner = DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={"n_workers": 1})
    copy = runner.duplicate()
    assert copy is not runner and copy.cluster_kwargs == {"n_workers": 1}
    assert copy.cluster_class == "distributed.LocalCluster"
    assert repr(copy).startswith("DaskTaskRunner(cluster_class='distributed.LocalCluster'")
    with pytest.raises(TypeError, match="cluster_kwargs must be a dict"):
        DaskTaskRunner(cluster_kwargs="n_workers=1")  # type: ignore[arg-type]


def test_an_unknown_cluster_class_says_what_to_install() -> None:
    @flow(task_runner=DaskTaskRunner(cluster_class="dask_nowhere.NoCluster"))
    def nowhere() -> None:
        t.noop.submit()

    state = nowhere(return_state=True)
    assert state.is_crashed()
    assert "dask_nowhere.NoCluster" in state.message and "pip install dask-nowhere" in state.message


def test_cluster_class_and_kwargs_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dicts arrive as JSON strings; a class as a dotted path; the LocalCluster gets one worker."""
    monkeypatch.setenv("TASKLOOM_TASK_RUNNER", "dask")
    monkeypatch.setenv("TASKLOOM_RUNNERS_DASK_CLUSTER_CLASS", "distributed.LocalCluster")
    monkeypatch.setenv("TASKLOOM_RUNNERS_DASK_CLUSTER_KWARGS", '{"n_workers": 1}')
    from taskloom import task
    from taskloom_dask import get_dask_client

    @task
    def count_workers() -> int:
        with get_dask_client() as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    @flow
    def configured() -> int:
        return count_workers.submit().result()

    assert configured() == 1


def test_loading_the_plugin_imports_no_dask() -> None:
    """The plugin registers a dotted name: dask loads when a flow enters the runner."""
    import subprocess
    import sys

    code = (
        "import sys, taskloom_dask\n"
        "from taskloom import plugins\n"
        "from taskloom.runners import DaskTaskRunner\n"
        "assert plugins.lookup('task_runner', 'dask').load() is DaskTaskRunner\n"
        "DaskTaskRunner(address='tcp://127.0.0.1:8786').duplicate()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _OneWorkerCluster(distributed.LocalCluster):
    """A LocalCluster subclass taking only n_workers, whose adapt() is ``async def``."""

    adapted: list[dict[str, Any]] = []

    def __init__(self, n_workers: int = 1) -> None:
        # In-process workers talk over inproc://, so no host; the dashboard stays on loopback.
        super().__init__(n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0")

    async def adapt(self, **kwargs: Any) -> None:  # type: ignore[override]
        _OneWorkerCluster.adapted.append(kwargs)


def test_a_custom_cluster_class_gets_only_the_keywords_it_takes_and_async_adapt_is_awaited() -> None:
    @flow(task_runner=DaskTaskRunner(cluster_class=_OneWorkerCluster, adapt_kwargs={"minimum": 1, "maximum": 1}))
    def on_subclass() -> int:
        return t.add.submit(2, 3).result()

    state = on_subclass(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == 5
    assert _OneWorkerCluster.adapted == [{"minimum": 1, "maximum": 1}], "an async adapt() must be awaited"


def test_performance_report_path_saves_the_report(tmp_path: Any) -> None:
    pytest.importorskip("bokeh")
    report = tmp_path / "dask-report.html"
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1}, performance_report_path=str(report))
    assert runner.duplicate() == runner and runner != DaskTaskRunner(cluster_kwargs={"n_workers": 1})

    @flow(task_runner=runner)
    def reported() -> list[int]:
        return t.add.map([1, 2, 3], 1).result()

    assert reported() == [2, 3, 4]
    text = report.read_text()
    assert "<html" in text.lower() and "Dask Performance Report" in text


_SLOW_MODULE = '''
import time

from taskloom import task

time.sleep(2)  # a module slow to import: the second thread arrives while the first imports it


@task
def imported_slowly(x: int) -> int:
    return x + 1
'''


def test_two_threads_of_a_worker_importing_a_task_module_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run waits for the first import instead of reading a half-made module."""
    import importlib
    import sys
    import uuid

    name = f"slow_import_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(_SLOW_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned worker processes inherit sys.path
    module = importlib.import_module(name)
    try:

        @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 4}))
        def two_at_once() -> Any:
            first = module.imported_slowly.submit(1)
            time.sleep(0.5)
            second = module.imported_slowly.submit(2)
            return first, second

        first, second = two_at_once()
        assert (first.name, second.name) == ("Completed", "Completed"), (first.message, second.message)
        assert (first.result(), second.result()) == (2, 3)
    finally:
        sys.modules.pop(name, None)
