"""Shared fixtures: a clean plugin registry and settings for tests that change them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import plugins
from taskloom.logging import reset_logging

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture(scope="session", autouse=True)
def _history_out_of_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Flows run by tests record their history in a scratch file, not in the checkout."""
    with pytest.MonkeyPatch.context() as session_env:
        session_env.setenv("TASKLOOM_HISTORY_PATH", str(tmp_path_factory.mktemp("history") / "history.db"))
        yield


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Reload entry points before and after the test (for tests that install or disable)."""
    plugins.reset()
    reset_logging()
    yield
    plugins.reset()
    reset_logging()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty directory with no TASKLOOM_* variables set."""
    monkeypatch.chdir(tmp_path)
    import os

    for var in list(os.environ):
        if var.startswith("TASKLOOM_"):
            monkeypatch.delenv(var)
    return tmp_path


class RecordHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def run_logs() -> Iterator[RecordHandler]:
    """Every record that reaches the ``taskloom`` logger in the flow's process."""
    handler = RecordHandler()
    logger = logging.getLogger("taskloom")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# -- interrupting a real `taskloom run` ---------------------------------------------------------

NAPS_SCRIPT = '''
import pathlib
import time

from taskloom import flow, task

MARKERS = pathlib.Path({markers!r})


@task
def nap(i):
    (MARKERS / f"started-{{i}}").touch()
    for _ in range(600):  # 30 s of Python-level sleeps: only an interrupt ends it sooner
        time.sleep(0.05)
    return i


@flow
def naps():
    return nap.map(range({count}))
'''


class InterruptedRun:
    """What a user sees after interrupting ``taskloom run naps.py:naps``: exit code, console,
    and the flow run's task runs as the history recorded them."""

    def __init__(self, returncode: int, output: str, flow_state: tuple[str, str | None], task_runs: dict[str, tuple[str, str | None]], started: set[str]) -> None:
        self.returncode = returncode
        self.output = output
        self.flow_state = flow_state
        self.task_runs = task_runs  # name -> (state name, message)
        self.started = started  # names of the runs that began before the signal

    def states(self) -> set[str]:
        return {state for state, _ in self.task_runs.values()}

    def check(self, signum: int, cut_off: tuple[str, ...] = ("Crashed",)) -> None:
        """What every runner must show after ``signum``: exit 130, the flow run Cancelled, every
        task run Cancelled or Crashed (none ran its 30 s), the ones that had started
        ``cut_off`` (Crashed where the flow's process sees runs start), no traceback."""
        import signal

        assert self.returncode == 130, self.output
        assert "taskloom: interrupted" in self.output
        state, message = self.flow_state
        assert state == "Cancelled"
        if signum == signal.SIGTERM:
            assert message == "Flow run was cancelled: KeyboardInterrupt (signal 15).", message
        assert len(self.task_runs) == 40, "every task run is in the history"
        assert self.states() <= {"Cancelled", "Crashed"}, f"runs left open or finished: {self.task_runs}"
        assert self.started, "the signal came after a run started"
        for name in self.started:
            assert self.task_runs[name][0] in cut_off, (name, self.task_runs[name])
        assert "Exception in thread" not in self.output, self.output
        assert "Traceback" not in self.output, self.output


@pytest.fixture
def interrupt_taskloom_run(tmp_path: Path) -> Any:
    """``interrupt(runner, signal)``: start ``taskloom run`` on 40 long naps, send ``signal``
    once a run has started, and return an `InterruptedRun`."""
    import os
    import signal as signals
    import subprocess
    import sys
    import time

    def interrupt(runner: str, signum: int = signals.SIGINT, count: int = 40, **env: str) -> InterruptedRun:
        markers = tmp_path / "markers"
        markers.mkdir()
        (tmp_path / "naps.py").write_text(NAPS_SCRIPT.format(markers=str(markers), count=count))
        history = tmp_path / "history.db"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
        environment.update(TASKLOOM_HISTORY_PATH=str(history), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **env)
        with open(tmp_path / "console.txt", "w") as console:
            proc = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "run", "naps.py:naps", "--runner", runner],
                cwd=tmp_path, stdout=console, stderr=subprocess.STDOUT, env=environment,
            )
            try:
                deadline = time.monotonic() + 240
                while not any(markers.iterdir()):
                    assert proc.poll() is None, (tmp_path / "console.txt").read_text()
                    assert time.monotonic() < deadline, "no task run started"
                    time.sleep(0.05)
                started = {f"nap-{p.name.split('-')[1]}" for p in markers.iterdir()}
                proc.send_signal(signum)
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        from taskloom_history import recent_flow_runs, task_runs
        from taskloom_history.store import connect

        conn = connect(history, create=False)
        try:
            [flow_run] = recent_flow_runs(conn)
            runs = {r.name: (r.state_name, r.message) for r in task_runs(conn, [flow_run.id])}
        finally:
            conn.close()
        # Run names are nap-<key>-<i>; the markers know only i.
        by_index = {name.rsplit("-", 1)[1]: name for name in runs}
        return InterruptedRun(
            proc.returncode,
            (tmp_path / "console.txt").read_text(),
            (flow_run.state_name, flow_run.message),
            runs,
            {by_index[s.split("-")[1]] for s in started if s.split("-")[1] in by_index},
        )

    return interrupt

