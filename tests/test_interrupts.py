"""Ctrl-C and SIGTERM on a real ``taskloom run``: the process exits 130 and every task run of
the flow run ends, in the history as in the hooks (the fixture is in conftest.py; the Dask and
Ray cases are in tests/dask and tests/ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("runner", "signum"),
    [
        ("sequential", signal.SIGINT),
        ("concurrent", signal.SIGINT),
        ("concurrent", signal.SIGTERM),
        ("processes", signal.SIGINT),
        ("processes", signal.SIGTERM),
    ],
)
def test_every_task_run_ends_after_an_interrupt(interrupt_taskloom_run: Any, runner: str, signum: int) -> None:
    # Bounded pools, so some runs wait their turn when the signal comes.
    run = interrupt_taskloom_run(
        runner, signum, TASKLOOM_RUNNERS_PROCESSES_MAX_WORKERS="2", TASKLOOM_RUNNERS_CONCURRENT_MAX_WORKERS="4"
    )
    run.check(signum)
    crashed = [name for name, (state, _) in run.task_runs.items() if state == "Crashed"]
    assert all(
        run.task_runs[name][1] == "Task run was cut off: the flow run was interrupted while it ran." for name in crashed
    )
    cancelled = [name for name, (state, _) in run.task_runs.items() if state == "Cancelled"]
    assert cancelled, "the runs that had not started are cancelled"
    assert all(
        run.task_runs[name][1] == "Task run was cancelled: the flow run was interrupted before it finished."
        for name in cancelled
    )


EXITS = """
import sys
from taskloom import flow, task

@task
def leave(code):
    sys.exit(code)

@task
def after():
    return "after"

@flow
def exits():
    leave.submit(3).wait()
    return after.submit().result()
"""


@pytest.mark.parametrize("runner", ["sequential", "concurrent", "processes"])
def test_sys_exit_in_a_task_ends_only_its_run(tmp_path: Path, runner: str) -> None:
    (tmp_path / "exits.py").write_text(EXITS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_HISTORY_PATH"] = str(tmp_path / "history.db")
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "run", "exits.py:exits", "--runner", runner],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Finished in state Crashed('Task run crashed: SystemExit: 3')" in done.stderr
    from taskloom_history import recent_flow_runs, task_runs
    from taskloom_history.store import connect

    conn = connect(tmp_path / "history.db", create=False)
    try:
        [flow_run] = recent_flow_runs(conn)
        states = sorted((r.task_name, r.state_name) for r in task_runs(conn, [flow_run.id]))
    finally:
        conn.close()
    assert states == [("after", "Completed"), ("leave", "Crashed")]
