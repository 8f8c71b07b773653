"""One flow run as a self-contained HTML page: a timeline of its task runs per worker, and a
summary (counts per state, slowest task runs, retries, failures).

The chart is SVG drawn here, so the page shows without JavaScript; a few lines of inline
script add the hover card. Nothing is loaded from elsewhere: the file can be mailed or
attached to a ticket and opens anywhere.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .store import FlowRunRecord, TaskRunRecord

__all__ = ["STATE_COLOURS", "render_report", "seconds_text"]

#: Fill colour of an attempt's bar, by the state that ended the attempt.
STATE_COLOURS = {
    "Completed": "#2e9d5b",
    "Cached": "#7cc49a",
    "Failed": "#d64545",
    "TimedOut": "#a11d2e",
    "Crashed": "#8e44ad",
    "Cancelled": "#8a8f98",
    "AwaitingRetry": "#f0a030",
    "Running": "#3b82f6",
}
_OTHER = "#6b7280"

_ROW, _GAP, _LABEL, _WIDTH, _AXIS = 22, 4, 230, 1000, 28


class _Bar:
    __slots__ = ("end", "index", "outcome", "start", "worker")

    def __init__(self, index: int, worker: str, start: float, end: float, outcome: str) -> None:
        self.index, self.worker, self.start, self.end, self.outcome = index, worker, start, end, outcome


def _attempts(task: TaskRunRecord, now: float) -> list[tuple[str, float, float, str]]:
    """(worker, start, end, outcome) of each attempt: from a Running state to the next one."""
    found = []
    states = task.states
    for i, state in enumerate(states):
        if state.type != "RUNNING":
            continue
        following = states[i + 1] if i + 1 < len(states) else None
        end = following.timestamp if following is not None else (task.end_time or now)
        outcome = following.name if following is not None else "Running"
        found.append((state.worker or task.worker or "unknown", state.timestamp, end, outcome))
    return found


def _worker_label(worker: str, hosts: int) -> str:
    host, _, rest = worker.partition("/")
    pid, _, thread = rest.partition("/")
    label = f"pid {pid} · {thread}" if pid else worker
    return f"{host} · {label}" if hosts > 1 else label


def _tick_step(span: float) -> float:
    raw = span / 8 if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def seconds_text(value: float | None) -> str:
    """A duration as people read it, one word for a table cell: 0.4ms, 131ms, 4.56s, 7.8min."""
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f}ms"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}min"


def render_report(
    run: FlowRunRecord,
    subflows: Sequence[FlowRunRecord],
    tasks: Sequence[TaskRunRecord],
) -> str:
    """The HTML page of ``run`` (with its subflow runs' task runs)."""
    flow_names = {run.id: run.name, **{s.id: s.name for s in subflows}}
    start = run.start_time
    last = max([run.end_time or 0.0, *(t.end_time or 0.0 for t in tasks), start])
    span = max(last - start, 1e-3)

    bars: list[_Bar] = []
    details: list[dict[str, Any]] = []
    for task in tasks:
        attempts = _attempts(task, last)
        for number, (worker, begin, end, outcome) in enumerate(attempts, 1):
            bars.append(_Bar(len(details), worker, begin, end, outcome))
            details.append({
                "task_run": task.name,
                "task": task.task_name,
                "flow_run": flow_names.get(task.flow_run_id, "?"),
                "state": task.state_name,
                "attempt": f"{number} of {len(attempts)}",
                "ended_in": outcome,
                "worker": worker,
                "start": f"+{begin - start:.3f} s",
                "duration": seconds_text(end - begin),
                "parameters": _parameters(task.parameters),
                "message": (task.message or "").splitlines()[0][:300] if task.message else "",
            })

    workers = sorted({b.worker for b in bars}, key=lambda w: min(b.start for b in bars if b.worker == w))
    hosts = len({w.split("/", 1)[0] for w in workers})
    row_of = {w: i for i, w in enumerate(workers)}
    height = _AXIS + len(workers) * _ROW + 10

    def x(t: float) -> float:
        return _LABEL + (t - start) / span * _WIDTH

    svg: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {_LABEL + _WIDTH + 20} {height}" '
        f'width="{_LABEL + _WIDTH + 20}" height="{height}" role="img" '
        f'aria-label="Timeline of the task runs of flow run {html.escape(run.name)}">'
    ]
    step = _tick_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        tx = x(start + tick)
        svg.append(f'<line class="grid" x1="{tx:.1f}" y1="{_AXIS - 6}" x2="{tx:.1f}" y2="{height - 6}"/>')
        svg.append(f'<text class="tick" x="{tx:.1f}" y="{_AXIS - 10}">{_tick_text(tick, step)}</text>')
        tick += step
    for worker, row in row_of.items():
        y = _AXIS + row * _ROW
        if row % 2:
            svg.append(f'<rect class="band" x="0" y="{y}" width="{_LABEL + _WIDTH + 20}" height="{_ROW}"/>')
        svg.append(
            f'<text class="lane" x="{_LABEL - 8}" y="{y + _ROW / 2 + 4}">'
            f"{html.escape(_worker_label(worker, hosts))}<title>{html.escape(worker)}</title></text>"
        )
    for bar in bars:
        top = _AXIS + row_of[bar.worker] * _ROW + _GAP / 2
        bx = x(bar.start)
        width = max(x(bar.end) - bx, 1.5)
        info = details[bar.index]
        title = f"{info['task_run']}: {bar.outcome}, {info['duration']}"
        svg.append(
            f'<rect class="bar" data-i="{bar.index}" data-state="{html.escape(bar.outcome)}" '
            f'x="{bx:.2f}" y="{top:.1f}" width="{width:.2f}" height="{_ROW - _GAP}" rx="3" '
            f'fill="{STATE_COLOURS.get(bar.outcome, _OTHER)}"><title>{html.escape(title)}</title></rect>'
        )
    svg.append("</svg>")

    return _PAGE.format(
        title=html.escape(f"{run.name} · {run.flow_name} · taskloom"),
        name=html.escape(run.name),
        flow=html.escape(run.flow_name),
        state=html.escape(run.shown_state),
        state_colour=STATE_COLOURS.get(run.shown_state, _OTHER),
        facts=_facts(run, subflows, tasks),
        legend=_legend(bars),
        chart="\n".join(svg) if bars else '<p class="empty">No task run of this flow run ran on a worker.</p>',
        summary=_summary(tasks),
        data=json.dumps(details).replace("</", "<\\/"),
        css=_CSS,
        script=_SCRIPT,
    )


def _tick_text(value: float, step: float) -> str:
    if step >= 60:
        return f"{value / 60:g} min"
    if step >= 0.5:
        return f"{round(value, 1):g} s"
    return f"{round(value * 1000, 3):g} ms"


def _parameters(text: str | None) -> str:
    return (text or "")[:300]


def _facts(run: FlowRunRecord, subflows: Sequence[FlowRunRecord], tasks: Sequence[TaskRunRecord]) -> str:
    started = datetime.datetime.fromtimestamp(run.start_time).strftime("%Y-%m-%d %H:%M:%S")
    items = [
        ("Started", started),
        ("Duration", seconds_text(run.duration)),
        ("Task runs", str(len(tasks))),
        ("Runner", run.task_runner or "-"),
        ("Host", f"{run.host or '-'} (pid {run.pid or '-'})"),
        ("Flow run id", run.id),
    ]
    if subflows:
        items.insert(3, ("Subflow runs", ", ".join(s.name for s in subflows)))
    if run.parameters:
        items.append(("Parameters", _parameters(run.parameters)))
    if run.message:
        items.append(("Message", run.message.splitlines()[0]))
    return "\n".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)


def _legend(bars: Sequence[_Bar]) -> str:
    seen = Counter(b.outcome for b in bars)
    return "".join(
        f'<span class="key"><i style="background:{STATE_COLOURS.get(name, _OTHER)}"></i>'
        f"{html.escape(name)} ({count})</span>"
        for name, count in sorted(seen.items(), key=lambda item: -item[1])
    )


def _summary(tasks: Sequence[TaskRunRecord]) -> str:
    counts = Counter(t.state_name for t in tasks)
    parts = ['<section><h2>Task runs by final state</h2><table class="counts"><tr><th>State</th><th>Task runs</th></tr>']
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        colour = STATE_COLOURS.get(name, _OTHER)
        parts.append(f'<tr><td><i class="dot" style="background:{colour}"></i>{html.escape(name)}</td><td>{count}</td></tr>')
    parts.append("</table></section>")

    retried = [t for t in tasks if t.attempts > 1 or any(s.name == "AwaitingRetry" for s in t.states)]
    parts.append('<section><h2>Retries</h2>')
    if retried:
        parts.append('<table class="retries"><tr><th>Task run</th><th>Attempts</th><th>Final state</th></tr>')
        for t in retried:
            parts.append(f"<tr><td>{html.escape(t.name)}</td><td>{t.attempts}</td><td>{html.escape(t.state_name)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No task run was retried.</p>")
    parts.append("</section>")

    timed = sorted((t for t in tasks if t.duration is not None), key=lambda t: -(t.duration or 0.0))[:10]
    parts.append('<section class="wide"><h2>Slowest task runs</h2><table class="slowest"><tr><th>Task run</th><th>State</th><th>Duration</th><th>Worker</th></tr>')
    for t in timed:
        parts.append(
            f"<tr><td>{html.escape(t.name)}</td><td>{html.escape(t.state_name)}</td>"
            f"<td>{seconds_text(t.duration)}</td><td>{html.escape(t.worker or '-')}</td></tr>"
        )
    parts.append("</table></section>")

    failures = [t for t in tasks if t.state_type in ("FAILED", "CRASHED")]
    if failures:
        parts.append('<section class="wide"><h2>Failures</h2>')
        for t in failures:
            parts.append(
                f"<details><summary><b>{html.escape(t.name)}</b>: {html.escape(t.state_name)}: "
                f"{html.escape((t.message or '').splitlines()[0] if t.message else '')}</summary>"
                f"<pre>{html.escape(t.traceback or t.message or '')}</pre></details>"
            )
        parts.append("</section>")
    return "\n".join(parts)


_CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --band:#f7f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; padding: 24px 32px; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h1 .flow { color: var(--muted); font-weight: 400; }
h2 { font-size: 15px; margin: 0 0 8px; }
.badge { display: inline-block; color: #fff; border-radius: 10px; padding: 1px 10px; font-size: 13px;
         vertical-align: 2px; margin-left: 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0 20px; }
dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; }
.chart { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; padding: 8px 0; }
.timeline text { font-size: 12px; fill: var(--fg); }
.timeline .tick { fill: var(--muted); text-anchor: middle; font-size: 11px; }
.timeline .lane { text-anchor: end; font-family: ui-monospace, Menlo, monospace; font-size: 11px; }
.timeline .grid { stroke: var(--line); }
.timeline .band { fill: var(--band); }
.timeline .bar { cursor: pointer; }
.timeline .bar:hover { stroke: #111; stroke-width: 1.5; }
.legend { margin: 8px 0 20px; color: var(--muted); }
.key { margin-right: 16px; white-space: nowrap; }
.key i, .dot { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 24px; }
.summary .wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: var(--band); padding: 8px; overflow-x: auto; font-size: 12px; }
#card { position: fixed; pointer-events: none; display: none; background: #111827; color: #f9fafb;
        padding: 8px 10px; border-radius: 6px; font-size: 12px; max-width: 420px; z-index: 10;
        box-shadow: 0 4px 14px rgba(0,0,0,.25); }
#card b { color: #fff; } #card span { color: #9ca3af; }
.empty { color: var(--muted); padding: 8px 16px; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"""

_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("task-runs").textContent);
  var card = document.getElementById("card");
  var rows = [["task", "Task"], ["state", "Final state"], ["attempt", "Attempt"], ["ended_in", "Attempt ended in"],
              ["worker", "Worker"], ["start", "Started"], ["duration", "Duration"],
              ["flow_run", "Flow run"], ["parameters", "Parameters"], ["message", "Message"]];
  function text(s) { var d = document.createElement("div"); d.textContent = s; return d.innerHTML; }
  document.querySelectorAll(".bar").forEach(function (bar) {
    bar.addEventListener("mouseenter", function () {
      var d = data[+bar.dataset.i];
      var out = "<b>" + text(d.task_run) + "</b>";
      rows.forEach(function (r) { if (d[r[0]]) out += "<br><span>" + r[1] + ":</span> " + text(d[r[0]]); });
      card.innerHTML = out; card.style.display = "block";
    });
    bar.addEventListener("mousemove", function (e) {
      var x = Math.min(e.clientX + 14, window.innerWidth - card.offsetWidth - 8);
      card.style.left = x + "px"; card.style.top = (e.clientY + 14) + "px";
    });
    bar.addEventListener("mouseleave", function () { card.style.display = "none"; });
  });
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{name} <span class="flow">· flow {flow}</span><span class="badge" style="background:{state_colour}">{state}</span></h1>
<dl>{facts}</dl>
</header>
<h2>Timeline: task runs per worker</h2>
<div class="chart">{chart}</div>
<div class="legend">{legend}</div>
<div class="summary">{summary}</div>
<footer>Written by taskloom-history. Hover a bar for its task run.</footer>
<div id="card" role="tooltip"></div>
<script type="application/json" id="task-runs">{data}</script>
<script>{script}</script>
</body>
</html>
"""
