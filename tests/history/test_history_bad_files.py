"""A history file that cannot be used is one clear warning; the flow runs all the same."""

from __future__ import annotations

import contextlib
import sqlite3
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


def test_a_locked_file_delays_nothing_but_the_history(in_tmp: Path, run_logs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_HISTORY_TIMEOUT", "0.3")
    doubled(1)  # creates the file
    holder = sqlite3.connect(in_tmp / ".taskloom" / "history.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what another program holding the file does
    try:
        assert doubled() == [0, 2, 4]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [message] = _warnings(run_logs)
    assert "stayed locked by another program for 0.3s" in message
    assert "raise history.timeout" in message


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
