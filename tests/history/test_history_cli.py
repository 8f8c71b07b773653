"""`taskloom runs`, `taskloom runs show` and `taskloom report`, as a user types them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from history_helpers import History

from taskloom import flow, task
from taskloom.cli import main


@task(retries=1, retry_delay_seconds=0)
def check(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad value {x}")
    return x


@flow
def checked(n: int = 4) -> str:
    check.map(range(n))
    return "done"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what the flows printed before
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_lists_recent_flow_runs_newest_first(history: History, capsys) -> None:
    checked(2)
    checked(4)
    code, out, _ = _run(capsys, "runs")
    assert code == 0
    header, newest, older = out.strip().splitlines()
    assert header.split() == ["ID", "FLOW", "RUN", "FLOW", "STATE", "STARTED", "DURATION", "TASK", "RUNS", "RUNNER"]
    assert "checked" in newest and "4 (1 failed)" in newest and "Completed" in newest
    assert "2" in older.split() and "(1 failed)" not in older

    code, out, _ = _run(capsys, "runs", "--json", "--limit", "1")
    [run] = json.loads(out)
    assert run["parameters"] == "n=4" and run["failed_count"] == 1 and run["duration"] >= 0


def test_runs_show_names_task_runs_workers_and_failures(history: History, capsys) -> None:
    checked(4)
    run = history.only_flow_run()
    code, out, _ = _run(capsys, "runs", "show", run.id[:8])
    assert code == 0
    assert f"Flow run {run.name!r} of flow 'checked': Completed" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("check-")}
    assert len(lines) == 4
    failed = next(line for line in lines.values() if "Failed" in line)
    assert re.search(r"Failed\s+\S+\s+1\s+\S+/\d+/\S+\s+x=2", failed), failed
    assert "Failed: task run 'check-" in out and "ValueError: bad value 2" in out
    assert "raise ValueError" in out  # the traceback from where it ran

    code, by_name, _ = _run(capsys, "runs", "show", run.name)
    assert code == 0 and by_name == out


def test_an_unknown_run_lists_the_recent_ones(history: History, capsys) -> None:
    checked(1)
    run = history.only_flow_run()
    for command in (["runs", "show", "no-such-run"], ["report", "no-such-run"]):
        code, out, err = _run(capsys, *command)
        assert code == 2 and out == ""
        assert err.startswith("taskloom: error: No flow run 'no-such-run' in ")
        assert f"Recent runs: {run.id[:8]} {run.name} (checked, Completed)." in err


def test_no_history_yet_says_how_to_get_one(in_tmp: Path, capsys) -> None:
    code, _, err = _run(capsys, "runs")
    assert code == 2 and "No run history at" in err and "run a flow" in err
    assert not (in_tmp / ".taskloom").exists()


def test_report_writes_one_self_contained_page(history: History, capsys, in_tmp: Path) -> None:
    checked(4)
    run = history.only_flow_run()
    code, out, _ = _run(capsys, "report", run.id, "-o", "out/run.html")
    assert code == 0 and "to out/run.html" in out
    page = (in_tmp / "out" / "run.html").read_text()
    # One bar per attempt: three first attempts that completed, the failing one twice.
    bars = re.findall(r'<rect class="bar" data-i="\d+" data-state="(\w+)"', page)
    assert sorted(bars) == ["AwaitingRetry", "Completed", "Completed", "Completed", "Failed"]
    assert run.name in page and "Task runs by final state" in page and "Slowest task runs" in page
    assert "bad value 2" in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must load nothing from elsewhere"

    code, out, _ = _run(capsys, "report", run.name)
    assert code == 0 and (in_tmp / f"{run.name}.html").exists()


def test_a_name_two_runs_share_is_refused_with_both_ids(history: History, capsys) -> None:
    @flow(flow_run_name="nightly-load")
    def nightly() -> None:
        check(1)

    nightly()
    nightly()
    runs = history.flow_runs()
    assert [r.name for r in runs] == ["nightly-load", "nightly-load"]
    code, out, err = _run(capsys, "runs", "show", "nightly-load")
    assert code == 2 and out == ""
    assert "More than one flow run in " in err and "is named 'nightly-load'" in err
    assert all(r.id[:8] in err for r in runs)
    assert "Give the run's id or a unique prefix of it instead." in err
    code, out, _ = _run(capsys, "runs", "show", runs[0].id[:8])
    assert code == 0 and "Flow run 'nightly-load' of flow 'nightly'" in out


@task
def doubled(x: int) -> int:
    return 2 * x


@task
def fans_out(n: int) -> int:
    return sum(doubled.map(range(n)).result())


@pytest.mark.slow
def test_runs_show_lists_the_runs_a_task_submitted_on_its_worker(history: History, capsys) -> None:
    @flow(task_runner="processes")
    def nested() -> int:
        return fans_out.submit(3).result()

    assert nested() == 6
    run = history.only_flow_run()
    code, out, _ = _run(capsys, "runs", "show", run.id[:8])
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("fans_out-")}
    [parent] = [name for name in rows if "/" not in name]
    children = [name for name in rows if name.startswith(f"{parent}/doubled-")]
    assert len(rows) == 4 and len(children) == 3, out
    assert all("Completed" in rows[name] for name in rows), out
