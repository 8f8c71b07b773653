"""``taskloom runs``, ``taskloom runs show RUN`` and ``taskloom report RUN``."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from . import store
from .report import seconds_text
from .store import FlowRunRecord, HistoryError, TaskRunRecord

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    runs = subparsers.add_parser(
        "runs", help="List recent flow runs from the run history.",
        description="List recent flow runs, newest first (taskloom-history).",
    )
    _db_option(runs)
    runs.add_argument("-n", "--limit", type=int, default=20, help="How many runs (default 20).")
    runs.add_argument("--flow", help="Only runs of this flow.")
    runs.add_argument("--subflows", action="store_true", help="List subflow runs too.")
    runs.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    runs.set_defaults(func=_guard(_cmd_runs))
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="{show}")
    show = runs_sub.add_parser(
        "show", help="One flow run: its task runs and failures.",
        description="Show a flow run's task runs, states, workers and failures.",
    )
    show.add_argument("run", help="A flow run id, a unique prefix of one, or a flow run name.")
    _db_option(show)
    show.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    show.set_defaults(func=_guard(_cmd_show))

    report = subparsers.add_parser(
        "report", help="Write a flow run's timeline as one self-contained HTML file.",
        description="Write an HTML timeline of a flow run: task runs per worker, by state.",
    )
    report.add_argument("run", help="A flow run id, a unique prefix of one, or a flow run name.")
    report.add_argument("-o", "--output", help="The HTML file to write (default: RUN-NAME.html).")
    _db_option(report)
    report.set_defaults(func=_guard(_cmd_report))


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="The history file (default: the history.path setting).")


class _CommandError(Exception):
    pass


def _guard(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (HistoryError, _CommandError) as exc:
            print(f"taskloom: error: {exc}", file=sys.stderr)
            return 2
        except sqlite3.Error as exc:
            print(f"taskloom: error: the history file could not be read: {exc}.", file=sys.stderr)
            return 2

    return run


def _open(args: argparse.Namespace) -> tuple[Path, sqlite3.Connection]:
    from .plugin import history_path

    path = Path(args.db).expanduser().resolve() if args.db else history_path()
    return path, store.connect(path, create=False)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _cmd_runs(args: argparse.Namespace) -> int:
    path, conn = _open(args)
    with contextlib.closing(conn):
        records = store.recent_flow_runs(conn, args.limit, args.flow, args.subflows)
    if args.json:
        print(json.dumps([_flow_json(r) for r in records], indent=2))
        return 0
    if not records:
        which = f" of flow {args.flow!r}" if args.flow else ""
        print(f"No flow runs{which} in {path} yet.")
        return 0
    rows = [
        [
            r.id[:8], r.name, r.flow_name, r.shown_state, _when(r.start_time), seconds_text(r.duration),
            f"{r.task_run_count}" + (f" ({r.failed_count} failed)" if r.failed_count else ""),
            r.task_runner or "-",
        ]
        for r in records
    ]
    print(_table(["ID", "FLOW RUN", "FLOW", "STATE", "STARTED", "DURATION", "TASK RUNS", "RUNNER"], rows))
    return 0


def _find(conn: sqlite3.Connection, path: Path, ref: str) -> FlowRunRecord:
    record = store.find_flow_run(conn, ref)
    if record is not None:
        same_name = store.flow_runs_named(conn, record.name, 6) if record.name == ref.strip() else []
        if len(same_name) > 1:
            listed = "; ".join(
                f"{r.id[:8]} ({r.flow_name}, {r.shown_state}, {_when(r.start_time)})" for r in same_name[:5]
            )
            more = " and more" if len(same_name) > 5 else ""
            raise _CommandError(
                f"More than one flow run in {path} is named {ref!r}: {listed}{more}. "
                "Give the run's id or a unique prefix of it instead."
            )
        return record
    recent = store.recent_flow_runs(conn, 5)
    listed = "; ".join(f"{r.id[:8]} {r.name} ({r.flow_name}, {r.shown_state})" for r in recent)
    hint = f" Recent runs: {listed}." if recent else " It holds no flow runs yet."
    raise _CommandError(f"No flow run {ref!r} in {path}.{hint}")


def _cmd_show(args: argparse.Namespace) -> int:
    path, conn = _open(args)
    with contextlib.closing(conn):
        run = _find(conn, path, args.run)
        subflows = store.subflow_runs(conn, run.id)
        tasks = store.task_runs(conn, [run.id, *(s.id for s in subflows)])
    if args.json:
        print(json.dumps(
            {**_flow_json(run), "subflow_runs": [_flow_json(s) for s in subflows],
             "task_runs": [attrs.asdict(t) for t in tasks]},
            indent=2,
        ))
        return 0
    print(f"Flow run {run.name!r} of flow {run.flow_name!r}: {run.shown_state}")
    print(f"  id          {run.id}")
    print(f"  started     {_when(run.start_time)}   duration {seconds_text(run.duration)}")
    print(f"  runner      {run.task_runner or '-'}   on {run.host or '-'} (pid {run.pid or '-'})")
    if run.parameters:
        print(f"  parameters  {_parameters(run.parameters)}")
    if run.message:
        print(f"  message     {run.message.splitlines()[0]}")
    for sub in subflows:
        print(f"  subflow run {sub.name!r} of flow {sub.flow_name!r}: {sub.shown_state} ({seconds_text(sub.duration)})")
    if tasks:
        print()
        flow_names = {run.id: run.name, **{s.id: s.name for s in subflows}}
        rows = [
            [t.name, t.state_name, seconds_text(t.duration), str(max(t.attempts - 1, 0)),
             t.worker or "-", _parameters(t.parameters, 40)]
            + ([flow_names.get(t.flow_run_id, "?")] if subflows else [])
            for t in tasks
        ]
        headers = ["TASK RUN", "STATE", "DURATION", "RETRIES", "WORKER", "PARAMETERS"]
        print(_table(headers + (["FLOW RUN"] if subflows else []), rows))
    failures = [t for t in tasks if t.state_type in ("FAILED", "CRASHED")]
    for failed in failures:
        print(f"\n{failed.state_name}: task run {failed.name!r}: {failed.message or ''}")
        if failed.traceback:
            print("    " + failed.traceback.rstrip().replace("\n", "\n    "))
    if run.traceback and not failures:
        print("\n" + run.traceback.rstrip())
    return 0


def _parameters(text: str | None, width: int | None = None) -> str:
    shown = text or "-"
    if width is not None and len(shown) > width:
        shown = shown[: width - 3] + "..."
    return shown


def _flow_json(record: FlowRunRecord) -> dict[str, Any]:
    data = attrs.asdict(record)
    data["state_name"] = record.shown_state
    data["duration"] = record.duration
    return data


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    path, conn = _open(args)
    with contextlib.closing(conn):
        run = _find(conn, path, args.run)
        subflows = store.subflow_runs(conn, run.id)
        tasks: list[TaskRunRecord] = store.task_runs(conn, [run.id, *(s.id for s in subflows)])
    output = Path(args.output or f"{run.name}.html")
    html = render_report(run, subflows, tasks)
    from taskloom.results import atomic_write_file

    try:
        atomic_write_file(output, html.encode("utf-8"))
    except OSError as exc:
        raise _CommandError(f"Could not write {output}: {exc.strerror or exc}.") from None
    print(f"Wrote the timeline of flow run {run.name!r} ({len(tasks)} task runs) to {output}")
    return 0
