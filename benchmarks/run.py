"""Run every benchmark and write docs/performance.md: `nox -s bench` (or `python benchmarks/run.py`).

Each row puts taskloom's per-task cost beside the raw engine underneath it, measured in the
same run on the same machine; the ratio is what the goals are stated in. Runners whose plugin
is not installed are skipped and said so.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

GOALS = {
    "concurrent": "within 3x of a raw ThreadPoolExecutor (logging at WARNING)",
    "dask": "within 1.3x of raw distributed.Client.submit",
    "ray": "within 1.3x of raw ray.remote",
    "data": "large intermediates on Dask and Ray: flow process peak within the raw driver's + 64 MiB, time within 1.2x",
}


def _versions() -> str:
    names = ["taskloom-core", "taskloom-local", "taskloom-loguru", "taskloom-dask", "taskloom-ray",
             "distributed", "ray", "pluggy", "attrs", "loguru"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.2f} at the start"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){memory}, Python {platform.python_version()}{load}"


def _collect(only: set[str] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    per_task: list[dict[str, Any]] = []
    startup: list[dict[str, Any]] = []
    skipped: list[str] = []
    for module_name, plugin in (
        ("bench_local", None), ("bench_history", "taskloom_history"),
        ("bench_dask", "taskloom_dask"), ("bench_ray", "taskloom_ray"),
        ("bench_data", None),
    ):
        short = module_name.removeprefix("bench_")
        if only and short not in only:
            continue
        if plugin is not None and importlib.util.find_spec(plugin) is None:
            skipped.append(f"{short}: {plugin} is not installed")
            continue
        module = importlib.import_module(module_name)
        print(f"running {module_name} ...", file=sys.stderr, flush=True)
        per_task.extend(module.run())
    if not only or "startup" in only:
        import bench_startup

        print("running bench_startup ...", file=sys.stderr, flush=True)
        startup.extend(bench_startup.run())
    return per_task, startup, skipped


def render(per_task: list[dict[str, Any]], startup: list[dict[str, Any]], skipped: list[str]) -> str:
    lines = [
        "# Performance",
        "",
        "Written by `nox -s bench` (`benchmarks/run.py`); do not edit by hand. Each row is",
        "taskloom's cost per task beside the raw engine underneath it, measured in the same run.",
        "Overheads are microseconds per no-op task, the flow's own start-up subtracted.",
        "The local runners' rows alternate taskloom and the raw executor in rounds: each figure",
        "is the median over the rounds, the ratio the median of the rounds' own ratios, and the",
        "range in brackets the lowest and highest of those.",
        "",
        f"- Measured: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {_machine()}",
        f"- Versions: {_versions()}",
        "",
        "## Per-task overhead",
        "",
        "| runner | case | raw engine | taskloom µs/task | raw µs/task | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    engines = {"dask": "distributed.Client.submit / map", "ray": "ray.remote + ray.get"}
    for row in per_task:
        if "taskloom_us_per_task" not in row:
            continue
        ratio = f"{row['ratio']:.2f}"
        if "ratio_range" in row:
            low, high = row["ratio_range"]
            ratio += f" ({low:.2f}-{high:.2f})"
        if "cpu_ratio" in row:
            ratio += f" (CPU {row['cpu_ratio']:.2f})"
        lines.append(
            f"| {row['runner']} | {row['case']} | {row.get('engine', engines.get(row['runner'], ''))} | "
            f"{row['taskloom_us_per_task']:.1f} | {row['raw_us_per_task']:.1f} | {ratio} |"
        )
    lines += ["", "Goals: " + "; ".join(f"{k}: {v}" for k, v in GOALS.items()) + "."]
    history = [row for row in per_task if "off_us_per_task" in row]
    if history:
        lines += [
            "",
            "## What run history costs",
            "",
            "The thread runner (`concurrent`) with taskloom-history off and on, alternating in one",
            "process (the rows above are with it on, as installed). Each figure is the median of",
            f"{history[0]['rounds']} rounds of five flows of 1,000 tasks minus five empty flows, so a",
            "round pays its share of the garbage collector's full passes; \"paired\" is the median of",
            "the rounds' own on/off ratios. CPU is the process's CPU time per task, all threads (the",
            "history writer's too); goal: at most +20%.",
            "",
            "| case | off µs/task | on µs/task | overhead | paired | CPU off | CPU on | CPU overhead |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in history:
            lines.append(
                f"| {row['case']} | {row['off_us_per_task']:.1f} | {row['on_us_per_task']:.1f} | "
                f"{row['overhead']:+.0%} | {row['paired_overhead']:+.0%} | "
                f"{row['cpu_off_us_per_task']:.1f} | {row['cpu_on_us_per_task']:.1f} | "
                f"{row['cpu_overhead']:+.0%} |"
            )
    lines += ["", "## Start-up and memory", "", "| case | taskloom | baseline | note |", "| --- | ---: | ---: | --- |"]
    for row in startup:
        if "taskloom_mib" in row:
            ours, raw = f"{row['taskloom_mib']:.0f} MiB", f"{row['raw_mib']:.0f} MiB"
        elif "taskloom_us" in row:
            ours, raw = f"{row['taskloom_us']:.0f} µs", f"{row['raw_us']:.0f} µs"
        else:
            ours, raw = f"{row['taskloom_ms']:.0f} ms", f"{row['raw_ms']:.0f} ms"
        lines.append(f"| {row['case']} | {ours} | {raw} | {row.get('note', '')} |")
    for row in per_task:
        if "taskloom_seconds" in row:
            lines.append(
                f"| {row['runner']}: {row['case']}, time | {row['taskloom_seconds']:.1f} s | "
                f"{row['raw_seconds']:.1f} s | ratio {row['ratio']:.2f} |"
            )
        if "taskloom_peak_rss_mib" in row:
            lines.append(
                f"| {row['runner']}: {row['case']}, flow process peak memory | "
                f"{row['taskloom_peak_rss_mib']:.0f} MiB | {row['raw_peak_rss_mib']:.0f} MiB | "
                f"{row.get('taskloom_rss_before_flow_mib', 0):.0f} MiB before the flow started |"
            )
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    lines += [
        "",
        "The ratio is the figure to read: absolute numbers move with the machine and its load.",
        "The 'called directly' rows compare a task called inside a flow with a plain Python call:",
        "that is the whole cost of a task run (ids, states, events), with nothing to hide it behind.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="local, history, dask, ray, data or startup (repeatable)")
    parser.add_argument("--output", default=str(HERE.parent / "docs" / "performance.md"))
    args = parser.parse_args()
    os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")
    per_task, startup, skipped = _collect(set(args.only) if args.only else None)
    text = render(per_task, startup, skipped)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
