"""The ``csv`` log sink, switched on by configuration as a user would.

`TestConformance` runs taskloom's sink conformance kit on it (records of every level, worker
records with run names, a broken sink beside it); the tests after it read the CSV columns.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskloom_csvlog import COLUMNS

from taskloom import flow, get_run_logger, plugins, task
from taskloom.cli import main
from taskloom.logging import reset_logging
from taskloom.testing import SinkConformance


class TestConformance(SinkConformance):
    sink = "csv"

    @pytest.fixture
    def taskloom_sink_options(self, tmp_path: Path) -> dict[str, str]:
        return {"path": str(tmp_path / "kit.csv")}

    def read_output(self, options: dict[str, str], stderr: str) -> str:
        return Path(options["path"]).read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, no TASKLOOM_* variables, and sinks rebuilt per test."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith("TASKLOOM_") and var != "TASKLOOM_HISTORY_PATH":
            monkeypatch.delenv(var)
    plugins.reset()
    reset_logging()
    yield tmp_path
    reset_logging()  # closes the CSV file
    plugins.reset()


@task
def greet(name: str) -> str:
    get_run_logger().info("hello, %s", name)
    return name


@task
def explode() -> None:
    raise RuntimeError("csv boom")


@flow(task_runner="sequential")
def greetings() -> None:
    greet("ada")
    explode.submit()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_one_row_per_record_with_run_names_and_ids(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_LOGGING_SINKS", "csv")
    monkeypatch.setenv("TASKLOOM_SINKS_CSV_PATH", "logs/runs.csv")
    state = greetings(return_state=True)
    assert state.is_failed()
    reset_logging()

    path = clean / "logs" / "runs.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    rows = _rows(path)
    hello = [r for r in rows if r["message"] == "hello, ada"]
    assert len(hello) == 1
    assert hello[0]["task_run_name"].startswith("greet-") and len(hello[0]["task_run_id"]) == 36
    assert hello[0]["flow_run_id"] and hello[0]["flow_run_name"]
    assert rows[0]["logger"] == "taskloom.engine" and rows[0]["message"].startswith("Created flow run")
    run_rows = [r for r in rows if r["logger"] != "taskloom.engine"]
    assert {r["flow_run_id"] for r in run_rows} == {hello[0]["flow_run_id"]}, "every run's row names its flow run"
    failure = next(r for r in rows if r["message"].startswith("Encountered exception during execution:"))
    assert failure["level"] == "ERROR" and "RuntimeError: csv boom" in failure["exception"]
    assert rows[-1]["message"].startswith("Finished in state Failed")
    assert rows[-1]["task_run_name"] == "", "the flow's own lines have no task run"


def test_a_second_flow_run_appends_without_a_second_header(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_LOGGING_SINKS", "csv")
    greetings(return_state=True)
    reset_logging()
    greetings(return_state=True)
    reset_logging()
    text = (clean / "taskloom-runs.csv").read_text(encoding="utf-8")
    assert text.count("time,level,logger") == 1
    assert len({r["flow_run_id"] for r in _rows(clean / "taskloom-runs.csv") if r["flow_run_id"]}) == 2


def test_the_option_shows_in_taskloom_config(clean: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKLOOM_SINKS_CSV_PATH", "elsewhere.csv")
    assert main(["config"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("sinks.csv.path"))
    assert '"elsewhere.csv"' in line and "env TASKLOOM_SINKS_CSV_PATH" in line
    assert main(["plugins"]) == 0
    assert "log sinks: csv" in capsys.readouterr().out
