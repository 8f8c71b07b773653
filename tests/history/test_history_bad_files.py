"""A history file that cannot be used is one clear warning; the flow runs all the same."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskloom import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def doubled(n: int = 3) -> list[int]:
    return [f.result() for f in double.map(range(n))]


def _warnings(run_logs) -> list[str]:
    return [r.getMessage() for r in run_logs.records if r.name == "taskloom.history"]


def test_a_file_that_is_not_a_database(in_tmp: Path, run_logs) -> None:
    (in_tmp / ".taskloom").mkdir()
    (in_tmp / ".taskloom" / "history.db").write_bytes(b"this is not sqlite" * 100)
    assert doubled() == [0, 2, 4]
    assert doubled(2) == [0, 2]  # a loop of flows: said once, not on every run
    [message] = _warnings(run_logs)
    assert "is not a usable taskloom history database" in message
    assert "move it away or set history.path" in message
    assert "\n" not in message


def _other_file(in_tmp: Path, version: int, table: str) -> Path:
    """A SQLite file where the history goes, written by someone else: a schema version, a table."""
    path = in_tmp / ".taskloom" / "history.db"
    path.parent.mkdir()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(f"CREATE TABLE {table}")
        conn.commit()
    return path


def test_a_file_from_a_newer_schema_is_left_alone(in_tmp: Path, run_logs) -> None:
    path = _other_file(in_tmp, 99, "future (x)")
    assert doubled() == [0, 2, 4]
    [message] = _warnings(run_logs)
    assert "newer taskloom-history (schema 99; this one reads up to 1)" in message
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["future"]


def test_a_locked_file_delays_no_flow_and_gets_the_runs_when_it_is_free(
    in_tmp: Path, run_logs, monkeypatch: pytest.MonkeyPatch, history
) -> None:
    # A flow that waited for the lock would wait this long: the test would time out.
    monkeypatch.setenv("TASKLOOM_HISTORY_TIMEOUT", "600")
    doubled(1)  # creates the file
    holder = sqlite3.connect(in_tmp / ".taskloom" / "history.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what another program holding the file does
    try:
        assert [doubled() for _ in range(3)] == [[0, 2, 4]] * 3
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # The writer tries again on its own, a few times a second.
    for _ in range(600):
        runs = history.flow_runs()
        if len(runs) == 4 and all(run.end_time is not None for run in runs):
            break
        time.sleep(0.05)
    assert sorted(run.task_run_count for run in runs) == [1, 3, 3, 3]
    assert {run.state_name for run in runs} == {"Completed"}
    assert all(len(history.task_runs(run)) == run.task_run_count for run in runs)
    assert _warnings(run_logs) == [], "nothing was lost, so nothing is said"


HOLDS_THE_LOCK = """
import sqlite3, sys
from taskloom import flow, task

@task
def double(x):
    return 2 * x

@flow
def doubled(n=3):
    return [f.result() for f in double.map(range(n))]

doubled(1)
holder = sqlite3.connect(".taskloom/history.db", isolation_level=None)
holder.execute("BEGIN EXCLUSIVE")  # held until this process ends
print(doubled(), doubled(2), flush=True)
"""


def test_runs_a_lock_kept_from_the_history_are_counted_once_at_exit(in_tmp: Path) -> None:
    (in_tmp / "holds.py").write_text(HOLDS_THE_LOCK)
    env = {**os.environ, "TASKLOOM_HISTORY_TIMEOUT": "0.5"}
    done = subprocess.run([sys.executable, "holds.py"], cwd=in_tmp, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 2, 4] [0, 2]"
    lines = [line for line in done.stderr.splitlines() if "taskloom.history" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].endswith(
        f"Run history: 2 flow run(s) and 5 task run(s) were not recorded: {in_tmp / '.taskloom' / 'history.db'} "
        "stayed locked by another program until this process ended (more than 0.5s); close it or "
        "raise history.timeout."
    ), lines[0]


def test_a_directory_in_the_way(in_tmp: Path, run_logs) -> None:
    (in_tmp / ".taskloom" / "history.db").mkdir(parents=True)
    assert doubled() == [0, 2, 4]
    [message] = _warnings(run_logs)
    assert "cannot be opened" in message and "history.db" in message


def test_another_programs_file_with_the_same_version_number(in_tmp: Path, run_logs) -> None:
    _other_file(in_tmp, 1, "flow_runs (id TEXT PRIMARY KEY, name TEXT)")
    assert doubled() == [0, 2, 4]
    [message] = _warnings(run_logs)
    assert "is not a usable taskloom history database (table flow_runs has 2 columns, not 17)" in message


def test_a_damaged_batch_of_task_runs_is_named(history, capsys) -> None:
    from taskloom.cli import main

    doubled(2)
    with sqlite3.connect(history.path) as conn:
        conn.execute("UPDATE task_run_batches SET task_runs = x'00ff00ff'")
    run = history.only_flow_run()
    capsys.readouterr()
    assert main(["runs", "show", run.id]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"taskloom: error: The task runs of flow run {run.id} in the history file are damaged")
    assert main(["runs"]) == 0  # the flow runs themselves are still listed
