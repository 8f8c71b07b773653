"""The display inside the test's own process, on a stand-in terminal: who owns it, and threads."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from _progress_terminal import last_frame, plain_lines

from taskloom import flow, task
from taskloom_rich import progress_wanted
from taskloom_rich.display import REFRESH_PER_SECOND


class FakeTerminal(io.StringIO):
    """Standard error as rich and taskloom see a terminal: ``isatty()`` is true."""

    def isatty(self) -> bool:
        return True

    def final_counts(self) -> dict[str, tuple[int, int, int]]:
        """``(done, total, failed)`` per task name in the last frame drawn."""
        return last_frame(plain_lines(self.getvalue()))


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, in_tmp: object) -> Iterator[FakeTerminal]:
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    fake = FakeTerminal()
    yield fake


def use(terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch) -> None:
    # In the test's body: pytest puts its own capture back on sys.stderr after fixtures ran.
    monkeypatch.setattr(sys, "stderr", terminal)


@task
def step(x: int) -> int:
    return x


@task
def inner_step(x: int) -> int:
    return x


@flow
def child(n: int) -> int:
    return sum(f.result() for f in inner_step.map(range(n)))


def test_a_subflow_draws_into_its_parents_display_and_does_not_stop_it(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(terminal, monkeypatch)
    seen: dict[str, bool] = {}

    @flow
    def parent() -> None:
        seen["live_before"] = sys.stderr is not terminal
        step.map(range(4))
        child(3)
        # The child flow run finished: the display it drew into is still the parent's, live.
        seen["live_after_subflow"] = sys.stderr is not terminal

    parent()
    assert seen == {"live_before": True, "live_after_subflow": True}
    assert sys.stderr is terminal, "stopping the display puts standard error back"
    assert terminal.final_counts() == {"step": (4, 4, 0), "inner_step": (3, 3, 0)}


def test_flows_in_several_threads_share_one_display(terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch) -> None:
    use(terminal, monkeypatch)
    threads_n, per_flow = 4, 25
    everyone_started = threading.Barrier(threads_n, timeout=30)
    errors: list[BaseException] = []

    @flow
    def worker_flow(n: int) -> int:
        everyone_started.wait()  # every flow run has started before any of them finishes
        futures = step.map(range(n))
        return sum(f.result() for f in futures)

    def run() -> None:
        try:
            assert worker_flow(per_flow) == sum(range(per_flow))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sys.stderr is terminal
    assert terminal.final_counts() == {"step": (threads_n * per_flow,) * 2 + (0,)}


def test_a_handler_holding_the_terminal_prints_above_the_bars(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(terminal, monkeypatch)
    handler = logging.StreamHandler(terminal)  # as logging.basicConfig() makes before a run
    user_logger = logging.getLogger("my_app")
    user_logger.addHandler(handler)
    user_logger.setLevel(logging.INFO)

    @task
    def chatty(x: int) -> int:
        logging.getLogger("my_app").info("working on %d", x)
        return x

    @flow
    def talk() -> None:
        chatty.map(range(3))
        assert handler.stream is not terminal

    try:
        talk()
    finally:
        user_logger.removeHandler(handler)
    assert handler.stream is terminal
    lines = plain_lines(terminal.getvalue())
    assert {f"working on {x}" for x in range(3)} <= set(lines)
    assert last_frame(lines) == {"chatty": (3, 3, 0)}


@pytest.mark.parametrize(
    ("enabled", "tty", "environ", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", False, {}, False),
        ("auto", True, {"TERM": "dumb"}, False),
        ("auto", True, {"TTY_INTERACTIVE": "0"}, False),
        ("AUTO", True, {}, True),
        (True, False, {}, True),
        ("on", False, {}, True),
        (False, True, {}, False),
        ("0", True, {}, False),
    ],
)
def test_progress_wanted(enabled: object, tty: bool, environ: dict[str, str], expected: bool) -> None:
    stream = FakeTerminal() if tty else io.StringIO()
    assert progress_wanted(enabled, stream, environ) is expected


def test_progress_wanted_rejects_other_values() -> None:
    with pytest.raises(ValueError, match="must be true, false or \"auto\", got 'sometimes'"):
        progress_wanted("sometimes", FakeTerminal(), {})


def _counting() -> bool:
    from taskloom import plugins

    return plugins.get_plugin_manager().get_plugin("taskloom-rich-counter") is not None


def test_per_task_hooks_are_registered_only_while_a_display_is_live(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    @flow
    def probe() -> None:
        step.submit(1).wait()
        seen.append(_counting())

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no display
    probe()
    use(terminal, monkeypatch)
    probe()
    assert seen == [False, True]
    assert not _counting()


def test_a_retried_run_counts_once_when_its_last_attempt_ends(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(terminal, monkeypatch)
    attempts: list[int] = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky(x: int) -> int:
        attempts.append(x)
        raise ValueError("not this time")

    @task(retries=1, retry_delay_seconds=0)
    def second_time_lucky(x: int) -> int:
        attempts.append(x)
        if attempts.count(x) < 2:
            raise ValueError("not this time")
        return x

    @flow
    def retrying() -> int:
        flaky.submit(1).wait()
        second_time_lucky.submit(2).wait()
        return 0

    retrying()
    assert sorted(attempts) == [1, 1, 1, 2, 2]
    assert terminal.final_counts() == {
        "flaky": (1, 1, 1),
        "second_time_lucky": (1, 1, 0),
    }


def test_a_run_whose_input_failed_counts_as_done_and_failed(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It ends in Pending('NotReady') and never runs: without counting it, its row would
    # never reach done/total.
    use(terminal, monkeypatch)

    @task
    def broken() -> int:
        raise ValueError("no input today")

    @task
    def downstream(x: int) -> int:
        return x

    @flow
    def blocked() -> None:
        downstream.submit(broken.submit()).wait()
        downstream.submit(1).wait()

    blocked(return_state=True)
    assert terminal.final_counts() == {
        "broken": (1, 1, 1),
        "downstream": (2, 2, 1),
    }


def test_lines_written_in_pieces_stay_whole_and_in_order(
    terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(terminal, monkeypatch)
    # A program that writes half lines to standard error itself, between log lines: the
    # console writes each line at once, as documented for such programs.
    monkeypatch.setenv("TASKLOOM_SINKS_CONSOLE_BATCH_SECONDS", "0")

    @flow
    def pieces() -> None:
        step.submit(1).wait()
        sys.stderr.write("start of a line, ")
        time.sleep(3 / REFRESH_PER_SECOND)  # redraws come while the line is half written
        sys.stderr.write("and its end\n")
        step.submit(2).wait()
        sys.stderr.write("unfinished: ")

    pieces()
    lines = plain_lines(terminal.getvalue())
    assert "start of a line, and its end" in lines
    # As on a terminal without the display, the next line written carries on from it.
    assert any(line.startswith("unfinished: ") and "Finished in state" in line for line in lines), lines
