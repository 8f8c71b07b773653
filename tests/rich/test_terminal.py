"""The display as a user sees it: a flow script run on a real pseudo-terminal, and with pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _progress_terminal import SCRIPT, bar_rows, clean_env, last_frame, plain_lines, run_on_terminal

FINAL = {
    "add_one": (12, 12, 0),
    "fail_odd": (6, 6, 3),
    "lookup": (2, 2, 0),
    "shout": (1, 1, 0),
    "inner_step": (5, 5, 0),  # the subflow's task runs, in the parent's display
}


def test_a_terminal_shows_one_bar_per_task_name_with_final_counts(tmp_path: Path) -> None:
    code, screen, _ = run_on_terminal(clean_env(tmp_path), tmp_path)
    lines = plain_lines(screen)
    assert code == 0, screen
    assert last_frame(lines) == FINAL, "\n".join(lines[-20:])
    assert "final=Completed rich_imported=True" in lines
    # Counts only grow while the flow runs.
    seen: dict[str, tuple[int, int]] = {}
    for name, done, total, _ in bar_rows(lines):
        before = seen.get(name, (0, 0))
        assert done >= before[0] and total >= before[1], (name, before, (done, total))
        seen[name] = (done, total)


def test_log_lines_and_prints_appear_whole_above_the_bars(tmp_path: Path) -> None:
    code, screen, _ = run_on_terminal(clean_env(tmp_path), tmp_path)
    lines = plain_lines(screen)
    assert code == 0, screen
    finished = [line for line in lines if "Finished in state" in line]
    # 26 task runs and 2 flow runs, each logging its end once, none torn by a frame.
    assert len(finished) == 28, "\n".join(finished)
    assert "a line printed by a task" in lines
    assert not [line for line in lines if "━" in line and (" | " in line or "printed" in line)]
    # The last frame stays on screen below the flow's last log line.
    flow_end = max(i for i, line in enumerate(lines) if "| Flow run '" in line and "Finished in state" in line)
    after = bar_rows(lines[flow_end + 1 :])
    assert [(name, done, total, failed) for name, done, total, failed in after[-len(FINAL) :]] == [
        (name, *counts) for name, counts in FINAL.items()
    ], "\n".join(lines[flow_end:])


def test_stdout_to_a_pipe_is_left_alone(tmp_path: Path) -> None:
    code, screen, out = run_on_terminal(clean_env(tmp_path), tmp_path, pipe_stdout=True)
    assert code == 0, screen
    assert out.splitlines() == ["a line printed by a task", "final=Completed rich_imported=True"]
    assert last_frame(plain_lines(screen)) == FINAL


def test_piped_stderr_shows_no_progress_and_never_imports_rich(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path,
        env=clean_env(tmp_path), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "final=Completed rich_imported=False" in proc.stdout
    assert "━" not in proc.stderr and "\x1b[" not in proc.stderr
    assert not bar_rows(proc.stderr.splitlines())
    assert "Finished in state Completed()" in proc.stderr


@pytest.mark.parametrize(
    "variables",
    [
        {"TASKLOOM_PROGRESS_ENABLED": "false"},
        {"TERM": "dumb"},
        {"TTY_COMPATIBLE": "0"},
    ],
    ids=["setting-false", "term-dumb", "tty-compatible-0"],
)
def test_a_terminal_can_say_no(tmp_path: Path, variables: dict[str, str]) -> None:
    code, screen, _ = run_on_terminal(clean_env(tmp_path, **variables), tmp_path)
    lines = plain_lines(screen)
    assert code == 0, screen
    assert not bar_rows(lines) and "━" not in screen
    assert "final=Completed rich_imported=False" in lines


def test_forced_on_a_pipe_prints_the_last_frame_once(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path,
        env=clean_env(tmp_path, TASKLOOM_PROGRESS_ENABLED="true"), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr, "no cursor movement or colour on a pipe"
    rows = bar_rows(proc.stderr.splitlines())
    assert {name: (done, total, failed) for name, done, total, failed in rows} == FINAL
    assert len(rows) == len(FINAL), "one frame, at the end"
    assert "final=Completed rich_imported=True" in proc.stdout


def test_a_wrong_setting_warns_once_and_the_flow_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path,
        env=clean_env(tmp_path, TASKLOOM_PROGRESS_ENABLED="sometimes"), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "progress.enabled" in line]
    assert len(warnings) == 1, proc.stderr
    assert "'progress.enabled' (env TASKLOOM_PROGRESS_ENABLED) must be true, false or \"auto\", got 'sometimes'" in warnings[0]
    assert "final=Completed rich_imported=False" in proc.stdout


def test_the_setting_in_taskloom_toml_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "taskloom.toml").write_text("[progress]\nenabled = false\n")
    code, screen, _ = run_on_terminal(clean_env(tmp_path), tmp_path)
    lines = plain_lines(screen)
    assert code == 0, screen
    assert not bar_rows(lines)
    assert "final=Completed rich_imported=False" in lines
