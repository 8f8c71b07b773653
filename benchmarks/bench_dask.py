"""Per-task overhead of the Dask runner beside raw `distributed.Client` on the same cluster.

    python benchmarks/bench_dask.py            # prints one row per case
    python benchmarks/bench_dask.py 200        # fewer tasks, for a quick look

One `LocalCluster` (two single-threaded worker processes, on loopback) is started once; each
case runs n no-op tasks through `DaskTaskRunner(address=...)` and, in the same run, through
raw ``client.submit(noop, i, pure=False)`` (or ``client.map``) + ``client.gather``. Times are
taken inside the flow, from the first submit to the last result, so the runner's own connect
and close (once per flow run) are not counted per task. The fan-out case runs in a fresh
process, so its peak memory (``ru_maxrss``) is the flow process's alone: a LocalCluster's
scheduler lives in the process that starts it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from taskloom import flow, task, wait

HERE = Path(__file__).resolve().parent


def noop_fn(i: int) -> None:
    """The raw Dask side's function: importable here, so it pickles by reference."""
    return None


@task
def noop(i: int) -> None:
    return None


def _taskloom_submit(address: str, n: int) -> float:
    from taskloom_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=address))
    def submitted() -> float:
        started = time.perf_counter()
        futures = [noop.submit(i) for i in range(n)]
        wait(futures)
        return time.perf_counter() - started

    return submitted()


def _taskloom_map(address: str, n: int) -> float:
    from taskloom_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=address))
    def mapped() -> float:
        started = time.perf_counter()
        wait(noop.map(range(n)))
        return time.perf_counter() - started

    return mapped()


def _raw_submit(client: Any, n: int) -> float:
    started = time.perf_counter()
    futures = [client.submit(noop_fn, i, pure=False) for i in range(n)]
    client.gather(futures)
    return time.perf_counter() - started


def _raw_map(client: Any, n: int) -> float:
    started = time.perf_counter()
    client.gather(client.map(noop_fn, range(n), pure=False))
    return time.perf_counter() - started


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fan_out(address: str, n: int, raw: bool) -> dict[str, float]:
    """One fan-out of n tasks in this process; run in a fresh process by `_fan_out_in_child`."""
    from distributed import Client

    from taskloom_dask import DaskTaskRunner

    before = _rss_mib()
    if raw:
        with Client(address, set_as_default=False) as client:
            before = _rss_mib()
            seconds = _raw_map(client, n)
    else:

        @flow(task_runner=DaskTaskRunner(address=address))
        def fan() -> float:
            started = time.perf_counter()
            wait(noop.map(range(n)))
            return time.perf_counter() - started

        seconds = fan()
    return {"seconds": seconds, "peak_mib": _rss_mib(), "before_mib": before}


def _fan_out_in_child(address: str, n: int, raw: bool) -> dict[str, float]:
    code = (
        "import json, sys, logging; sys.path.insert(0, %r); import bench_dask; "
        "print(json.dumps(bench_dask.fan_out(%r, %d, %r)))" % (str(HERE), address, n, raw)
    )
    env = {**os.environ, "TASKLOOM_LOGGING_LEVEL": os.environ.get("TASKLOOM_LOGGING_LEVEL", "WARNING")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _row(case: str, n: int, ours: float, raw: float) -> dict[str, Any]:
    return {
        "runner": "dask",
        "case": case,
        "taskloom_us_per_task": round(ours / n * 1e6, 1),
        "raw_us_per_task": round(raw / n * 1e6, 1),
        "ratio": round(ours / raw, 2),
    }


def run(n: int = 1000, fan_out_n: int = 10_000, repeat: int = 3) -> list[dict[str, Any]]:
    """Measure each case ``repeat`` times (best of) on one LocalCluster; return the rows."""
    from distributed import Client, LocalCluster

    rows: list[dict[str, Any]] = []
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster, Client(cluster, set_as_default=False) as client:
        address = cluster.scheduler_address
        client.gather(client.map(noop_fn, range(50), pure=False))  # warm the workers
        _taskloom_submit(address, 50)
        best: dict[str, float] = {}
        for _ in range(repeat):
            for name, measure in (
                ("raw submit", lambda: _raw_submit(client, n)),
                ("taskloom submit", lambda: _taskloom_submit(address, n)),
                ("raw map", lambda: _raw_map(client, n)),
                ("taskloom map", lambda: _taskloom_map(address, n)),
            ):
                seconds = measure()
                best[name] = min(best.get(name, seconds), seconds)
        rows.append(_row(f"{n} submitted", n, best["taskloom submit"], best["raw submit"]))
        rows.append(_row(f"{n} mapped", n, best["taskloom map"], best["raw map"]))
        if fan_out_n:
            ours = _fan_out_in_child(address, fan_out_n, raw=False)
            raw = _fan_out_in_child(address, fan_out_n, raw=True)
            row = _row(f"{fan_out_n} fan-out (map)", fan_out_n, ours["seconds"], raw["seconds"])
            row.update(
                taskloom_seconds=round(ours["seconds"], 2),
                raw_seconds=round(raw["seconds"], 2),
                taskloom_peak_rss_mib=round(ours["peak_mib"], 1),
                raw_peak_rss_mib=round(raw["peak_mib"], 1),
                taskloom_rss_before_mib=round(ours["before_mib"], 1),
            )
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import bench_dask  # the tasks must be importable by name on the workers, not __main__

    os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for result in bench_dask.run(count):
        print(json.dumps(result))
