"""Several flow processes writing one history file at once, and a flow process that dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from history_helpers import History

from taskloom.cli import main
from taskloom_history import HistoryError

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from taskloom import flow, task

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    @flow
    def squares(n: int, nap_seconds: float = 0.0) -> int:
        futures = square.map(range(n))
        if nap_seconds:
            nap.submit(nap_seconds).result()
        return sum(f.result() for f in futures)

    if __name__ == "__main__":
        print(squares(int(sys.argv[1]), float(sys.argv[2])))
    """
)


def _start(folder: Path, n: int, nap: float = 0.0) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_LOGGING_LEVEL"] = "WARNING"
    return subprocess.Popen(
        [sys.executable, "squares.py", str(n), str(nap)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_flows_in_several_processes_write_one_file(history: History, in_tmp: Path) -> None:
    (in_tmp / "squares.py").write_text(SCRIPT)
    procs = [_start(in_tmp, 300) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(sum(i * i for i in range(300)))
        assert "history" not in err.lower(), err
    runs = history.flow_runs()
    assert len(runs) == 3 and len({r.pid for r in runs}) == 3
    for run in runs:
        assert run.state_name == "Completed" and run.task_run_count == 300
        tasks = history.task_runs(run)
        assert len(tasks) == 300 and {t.state_name for t in tasks} == {"Completed"}
    with sqlite3.connect(history.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(DISTINCT flow_run_id) FROM task_run_batches").fetchone() == (3,)


def test_a_flow_process_that_dies_shows_as_crashed(history: History, in_tmp: Path, capsys) -> None:
    (in_tmp / "squares.py").write_text(SCRIPT)
    proc = _start(in_tmp, 5, nap=60.0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the run and its tasks are on file
            try:
                runs = history.flow_runs()
            except HistoryError:  # not there yet, or its schema not yet written
                runs = []
            if runs and any(t.state_name == "Running" for t in history.task_runs(runs[0])):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the flow run never reached the history file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    run = history.only_flow_run()
    assert run.state_name == "Running" and run.shown_state == "Crashed"
    tasks = history.task_runs(run)
    assert [t.state_name for t in tasks if t.task_name == "nap"] == ["Running"]
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert "Crashed" in capsys.readouterr().out


RETRYING = textwrap.dedent(
    """
    from taskloom import flow

    @flow(retries=1, retry_delay_seconds=60)
    def patient() -> None:
        raise RuntimeError("first attempt fails")

    if __name__ == "__main__":
        patient()
    """
)


def test_ctrl_c_in_a_flow_retry_delay_still_ends_the_run(history: History, in_tmp: Path) -> None:
    (in_tmp / "patient.py").write_text(RETRYING)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    proc = subprocess.Popen(
        [sys.executable, "patient.py"], cwd=in_tmp, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "will attempt to run again" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "Finished in state Cancelled('Flow run was cancelled: KeyboardInterrupt.')" in err
    run = history.only_flow_run()
    assert run.state_name == "Cancelled" and run.end_time is not None
