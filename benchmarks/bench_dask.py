"""Per-task overhead of the Dask runner beside raw `distributed.Client` on the same cluster.

    python benchmarks/bench_dask.py            # prints one JSON row per case
    python benchmarks/bench_dask.py 200        # fewer tasks, for a quick look

One `LocalCluster` (two single-threaded worker processes, on loopback) is started once. Each
case runs n no-op tasks through `DaskTaskRunner(address=...)` and, in the same run and
interleaved with it, through raw ``client.submit(noop, i, pure=False)`` (or ``client.map``) +
``client.gather``. Wall time is taken inside the flow, from the first submit to the last
result, so the runner's connect and close (once per flow run) are not counted per task; the
best of ``repeat`` rounds is reported. CPU time (the flow's process plus the scheduler and
worker processes) is reported too: on a shared or small machine it is steadier than wall time.

The fan-out case runs in a fresh process, so its peak memory (``ru_maxrss``) is the flow
process's alone (a LocalCluster's scheduler lives in the process that starts it).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskloom import flow, task, wait

HERE = Path(__file__).resolve().parent


def noop_fn(i: int) -> None:
    """The raw Dask side's function: importable by name, as the task below is."""
    return None


@task
def noop(i: int) -> None:
    return None


def _cpu_seconds(processes: list[Any]) -> float:
    """CPU time of this process and ``processes`` (the cluster's), user plus system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for process in processes:
        try:
            times = process.cpu_times()
        except Exception:  # a process that left
            continue
        total += times.user + times.system
    return total


class _Clock:
    """Wall and CPU seconds between `start` and `stop`."""

    def __init__(self, processes: list[Any]) -> None:
        self.processes = processes
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.cpu = _cpu_seconds(self.processes)
        self.wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        return {"wall": wall, "cpu": _cpu_seconds(self.processes) - self.cpu}


def _taskloom_submit(address: str, n: int, clock: _Clock) -> dict[str, float]:
    from taskloom_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=address))
    def submitted() -> dict[str, float]:
        clock.start()
        futures = [noop.submit(i) for i in range(n)]
        wait(futures)
        return clock.stop()

    return submitted()


def _taskloom_map(address: str, n: int, clock: _Clock) -> dict[str, float]:
    from taskloom_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=address))
    def mapped() -> dict[str, float]:
        clock.start()
        wait(noop.map(range(n)))
        return clock.stop()

    return mapped()


def _raw_submit(client: Any, n: int, clock: _Clock) -> dict[str, float]:
    clock.start()
    futures = [client.submit(noop_fn, i, pure=False) for i in range(n)]
    client.gather(futures)
    return clock.stop()


def _raw_map(client: Any, n: int, clock: _Clock) -> dict[str, float]:
    clock.start()
    client.gather(client.map(noop_fn, range(n), pure=False))
    return clock.stop()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fan_out(address: str, n: int, raw: bool) -> dict[str, float]:
    """One fan-out of n tasks in this process; `_fan_out_in_child` runs it in a fresh one."""
    from distributed import Client

    from taskloom_dask import DaskTaskRunner

    if raw:
        with Client(address, set_as_default=False) as client:
            before = _rss_mib()
            seconds = _raw_map(client, n, _Clock([]))["wall"]
    else:
        import distributed  # noqa: F401 - imported before the baseline, as in the raw case

        before = _rss_mib()

        @flow(task_runner=DaskTaskRunner(address=address))
        def fan() -> float:
            started = time.perf_counter()
            wait(noop.map(range(n)))
            return time.perf_counter() - started

        seconds = fan()
    return {"seconds": seconds, "peak_mib": _rss_mib(), "before_mib": before}


def _fan_out_in_child(address: str, n: int, raw: bool) -> dict[str, float]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import bench_dask; "
        f"print(json.dumps(bench_dask.fan_out({address!r}, {n}, {raw!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _row(case: str, n: int, ours: dict[str, float], raw: dict[str, float]) -> dict[str, Any]:
    return {
        "runner": "dask",
        "case": case,
        "taskloom_us_per_task": round(ours["wall"] / n * 1e6, 1),
        "raw_us_per_task": round(raw["wall"] / n * 1e6, 1),
        "ratio": round(ours["wall"] / raw["wall"], 2),
        "taskloom_cpu_us_per_task": round(ours["cpu"] / n * 1e6, 1),
        "raw_cpu_us_per_task": round(raw["cpu"] / n * 1e6, 1),
        "cpu_ratio": round(ours["cpu"] / raw["cpu"], 2),
    }


def run(
    n: int = 1000, fan_out_n: int = 10_000, repeat: int = 3, log_level: str = "WARNING"
) -> list[dict[str, Any]]:
    """Measure each case on one LocalCluster, ``repeat`` rounds interleaved; return the rows.

    ``log_level`` is the flows' logging level: at INFO every task run writes three console
    lines, a cost of the log sinks rather than of the runner.
    """
    from distributed import Client, LocalCluster

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the workers import this module by name
    os.environ["TASKLOOM_LOGGING_LEVEL"] = log_level
    rows: list[dict[str, Any]] = []
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster, Client(cluster, set_as_default=False) as client:
        address = cluster.scheduler_address
        import psutil

        clock = _Clock(psutil.Process().children(recursive=True))  # the cluster's processes
        client.gather(client.map(noop_fn, range(50), pure=False))  # warm the workers up
        _taskloom_submit(address, 50, clock)
        cases: dict[str, Callable[[], dict[str, float]]] = {
            "raw submit": lambda: _raw_submit(client, n, clock),
            "taskloom submit": lambda: _taskloom_submit(address, n, clock),
            "raw map": lambda: _raw_map(client, n, clock),
            "taskloom map": lambda: _taskloom_map(address, n, clock),
        }
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeat):
            for name, measure in cases.items():
                took = measure()
                seen = best.setdefault(name, took)
                seen["wall"], seen["cpu"] = min(seen["wall"], took["wall"]), min(seen["cpu"], took["cpu"])
        rows.append(_row(f"{n} submitted", n, best["taskloom submit"], best["raw submit"]))
        rows.append(_row(f"{n} mapped", n, best["taskloom map"], best["raw map"]))
        if fan_out_n:
            ours = _fan_out_in_child(address, fan_out_n, raw=False)
            raw = _fan_out_in_child(address, fan_out_n, raw=True)
            rows.append(
                {
                    "runner": "dask",
                    "case": f"{fan_out_n} fan-out (map)",
                    "taskloom_seconds": round(ours["seconds"], 2),
                    "raw_seconds": round(raw["seconds"], 2),
                    "ratio": round(ours["seconds"] / raw["seconds"], 2),
                    "taskloom_peak_rss_mib": round(ours["peak_mib"], 1),
                    "taskloom_rss_before_flow_mib": round(ours["before_mib"], 1),
                    "raw_peak_rss_mib": round(raw["peak_mib"], 1),
                    "raw_rss_before_mib": round(raw["before_mib"], 1),
                }
            )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import bench_dask  # by name, not as __main__: the workers import the tasks from it

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for result in bench_dask.run(count):
        print(json.dumps(result))
