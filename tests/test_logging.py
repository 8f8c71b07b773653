"""Run logs as a user sees them: the console format, the JSON and file sinks, the fallback."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom import flow, get_run_logger, task

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (?P<level>[A-Z]+) *\| (?P<prefix>.+?) - (?P<message>.*)$")

SCRIPT = """
from taskloom import flow, task, get_run_logger

@task
def shout(word):
    get_run_logger().warning("careful: %s", word)
    return word.upper()

@task
def fails():
    raise ValueError("no good")

@flow(task_runner="sequential")
def loud_flow():
    shout.submit("hi")
    fails.submit()

loud_flow(return_state=True)
"""


def run_script(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "loud.py"
    script.write_text(SCRIPT)
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
        env={**base, **(env or {})}, timeout=60,
    )


def parsed(stderr: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            rows.append((match["level"], match["prefix"], match["message"]))
    return rows


def test_console_lines_are_in_the_prefect_format(tmp_path: Path) -> None:
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = parsed(proc.stderr)
    assert rows[0][:2] == ("INFO", "taskloom.engine")
    flow_run = re.match(r"Created flow run '(\w+-\w+-[0-9a-f]{4})' for flow 'loud-flow'", rows[0][2])
    assert flow_run, rows[0]
    name = flow_run[1]
    messages = [(level, prefix.split(" '")[0], message) for level, prefix, message in rows]
    assert ("WARNING", "Task run", "careful: hi") in messages
    assert ("ERROR", "Task run", "Encountered exception during execution: ValueError('no good')") in messages
    assert rows[-1] == ("ERROR", f"Flow run '{name}'", "Finished in state Failed('1/2 states failed.')")
    assert "ValueError: no good" in proc.stderr, "the traceback follows the error line"
    assert "\x1b[" not in proc.stderr, "no colour when stderr is not a terminal"


def test_level_from_environment_hides_info(tmp_path: Path) -> None:
    proc = run_script(tmp_path, {"TASKLOOM_LOGGING_LEVEL": "WARNING"})
    levels = {level for level, _, _ in parsed(proc.stderr)}
    assert levels == {"WARNING", "ERROR"}


def test_json_sink_writes_run_ids(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    proc = run_script(tmp_path, {"TASKLOOM_LOGGING_SINKS": "console,json", "TASKLOOM_LOGGING_JSON_FILE": str(out)})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    warning = next(r for r in records if r["message"] == "careful: hi")
    assert warning["level"] == "WARNING" and warning["logger"] == "taskloom.task_runs"
    assert warning["task_run_name"].startswith("shout-") and len(warning["task_run_id"]) == 36
    assert warning["flow_run_name"] and len(warning["flow_run_id"]) == 36
    finished = [r for r in records if r["message"].startswith("Finished in state Failed")]
    assert finished and finished[-1]["task_run_name"] is None


def test_file_sink_appends_plain_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "taskloom.log"
    (tmp_path / "taskloom.toml").write_text(f"[logging]\nsinks = ['file']\nfile = '{log_file}'\n")
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert parsed(proc.stderr) == [], "only the file sink is configured"
    assert ("WARNING", "careful: hi") in [(lvl, msg) for lvl, _, msg in parsed(log_file.read_text())]


def test_without_loguru_the_core_prints_the_same_format(tmp_path: Path) -> None:
    with_loguru = parsed(run_script(tmp_path).stderr)
    plain = parsed(run_script(tmp_path, {"TASKLOOM_DISABLE_PLUGINS": "loguru"}).stderr)
    strip = lambda rows: [(lvl, p.split(" '")[0], re.sub(r"'[\w-]+'", "'*'", m)) for lvl, p, m in rows]  # noqa: E731
    assert strip(plain) == strip(with_loguru)


def test_unknown_sink_is_one_clear_error(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> None:
    monkeypatch.setenv("TASKLOOM_LOGGING_SINKS", "console,syslog")

    @flow
    def any_flow() -> None:
        pass

    from taskloom.plugins import PluginError

    with pytest.raises(PluginError) as info:
        any_flow()
    message = str(info.value)
    assert message.startswith("Unknown log sink 'syslog'. Installed log sinks: ")
    assert all(f"'{name}'" in message for name in ("console", "file", "json"))


def test_logs_of_one_task_run_arrive_in_order_under_threads(run_logs) -> None:  # type: ignore[no-untyped-def]
    @task
    def chatty(i: int) -> None:
        logger = get_run_logger()
        for j in range(20):
            logger.info("run %d line %d", i, j)

    @flow(task_runner="concurrent")
    def many() -> None:
        chatty.map(range(8))

    many()
    for i in range(8):
        lines = [m for m in run_logs.messages() if m.startswith(f"run {i} ")]
        assert lines == [f"run {i} line {j}" for j in range(20)]


def test_console_lines_are_loguru_s_lines_in_loguru_s_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskloom_loguru import sinks

    written: list[str] = []
    through_loguru = sinks.LoguruHandler(written.append, format=sinks.TEXT_FORMAT, colorize=True)
    for colour in (True, False):
        monkeypatch.setattr(sinks, "_stderr_is_tty", lambda colour=colour: colour)
        console = sinks.ConsoleSink()
        through_loguru_plain = sinks.LoguruHandler(written.append, format=sinks.TEXT_FORMAT, colorize=False)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            record = logging.LogRecord("taskloom.task_runs", level, "", 0, "Finished in state %r", ("Completed()",), None)
            record.task_run_name = "noop-0"
            (through_loguru if colour else through_loguru_plain).handle(record)
            assert console.format(record) == str(written[-1]), logging.getLevelName(level)


BUSY_SCRIPT = """
import sys
from taskloom import flow, task, get_run_logger

@task
def step(i):
    if i == 150:
        get_run_logger().warning("halfway")
        sys.stderr.write("RIGHT AFTER THE WARNING\\n")
    return i

@flow(task_runner="concurrent")
def busy():
    return [f.result() for f in step.map(range(300))]

busy()
sys.stderr.write("THE FLOW RETURNED\\n")
"""


def test_console_lines_are_out_by_the_time_the_flow_returns_and_warnings_at_once(tmp_path: Path) -> None:
    """The console writes INFO lines in batches from a thread of its own; still, every line of
    a flow run is written before its call returns, in order per run, and a warning (with the
    lines before it) before the code after it goes on."""
    script = tmp_path / "busy.py"
    script.write_text(BUSY_SCRIPT)
    # History off: recording the run at its end takes long enough to hide a missing flush.
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    base["TASKLOOM_HISTORY_ENABLED"] = "false"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=base, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    returned = lines.index("THE FLOW RETURNED")
    assert returned == len(lines) - 1
    rows = parsed("\n".join(lines[:returned]))
    assert rows[-1][1].startswith("Flow run '") and rows[-1][2] == "Finished in state Completed()"
    created = [m for _, _, m in rows if m.startswith("Created task run")]
    finished = [r for r in parsed(proc.stderr) if r[2] == "Finished in state Completed()" and r[1].startswith("Task run")]
    assert len(created) == 300 and len(finished) == 300
    warning = next(i for i, line in enumerate(lines) if line.endswith(" - halfway"))
    assert "WARNING" in lines[warning] and warning < lines.index("RIGHT AFTER THE WARNING")
    step_150 = next(i for i, line in enumerate(lines) if re.search(r"Submitted task run 'step-\w+-150' for execution", line))
    assert step_150 < warning, "lines logged before the warning are written before it"


def test_the_console_does_not_keep_more_than_its_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from taskloom_loguru import sinks

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    console = sinks.ConsoleSink(batch_seconds=60, max_backlog=5)
    try:
        for i in range(20):
            console.handle(logging.LogRecord("taskloom.engine", logging.INFO, "", 0, f"line {i}", None, None))
        written = [m for _, _, m in parsed(stderr.getvalue())]
        assert len(written) >= 14 and written == [f"line {i}" for i in range(len(written))]
    finally:
        console.close()
    assert [m for _, _, m in parsed(stderr.getvalue())] == [f"line {i}" for i in range(20)]


def test_a_forked_child_writes_its_own_lines_and_never_its_parents(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A process forked while lines wait (and perhaps while the writer holds its lock) writes
    its own lines at once and leaves the waiting ones to its parent: nothing twice, no hang."""
    from taskloom_loguru import sinks

    out = tmp_path / "stderr.txt"
    with out.open("w", buffering=1) as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        console = sinks.ConsoleSink(batch_seconds=60)
        try:
            console.handle(logging.LogRecord("taskloom.engine", logging.INFO, "", 0, "parent waiting", None, None))
            console._write_lock.acquire()  # as if the writer thread were writing at the fork
            pid = os.fork()
            if pid == 0:
                try:
                    console.handle(logging.LogRecord("taskloom.engine", logging.INFO, "", 0, "from the child", None, None))
                    console.flush()
                finally:
                    os._exit(0)
            console._write_lock.release()
            assert os.waitpid(pid, 0)[1] == 0
            assert [m for _, _, m in parsed(out.read_text())] == ["from the child"]
        finally:
            console.close()
    assert [m for _, _, m in parsed(out.read_text())] == ["from the child", "parent waiting"]
