"""Where data lives: a pipeline of large intermediates on Dask and Ray, beside the raw engine.

Twelve tasks each make 50 MiB, twelve more each take one blob and return its length; only
the lengths are asked for. Each side runs in a fresh process of its own, on a cluster it
starts (a LocalCluster of two single-threaded worker processes; a local Ray with 2 CPUs), and
reports the pipeline's wall time and the flow process's peak memory. The goal: the flow's
process needs about what the raw engine's driver needs (within 64 MiB), and the time is
within 1.2x of the raw engine's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

BLOBS = 12
MIB = 50


def _make(mib: int) -> bytes:
    return b"x" * (mib << 20)


def _length(data: bytes) -> int:
    return len(data)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dask(side: str) -> dict[str, float]:
    """Both sides connect a new client to a running cluster, as a flow run does."""
    import distributed

    from taskloom import flow, task
    from taskloom_dask import DaskTaskRunner

    make, length = task(_make, name="make"), task(_length, name="length")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        runner = DaskTaskRunner(address=cluster.scheduler_address)

        @flow(task_runner=runner)
        def pipeline(mib: int) -> list[int]:
            return [f.result() for f in length.map(make.map([mib] * BLOBS))]

        pipeline(0)  # the workers import taskloom, as a raw warm-up imports nothing
        before = _peak_mib()
        started = time.perf_counter()
        if side == "raw":
            with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
                blobs = client.map(_make, [MIB] * BLOBS, pure=False)
                lengths = client.gather(client.map(_length, blobs, pure=False))
        else:
            lengths = pipeline(MIB)
        seconds = time.perf_counter() - started
    assert lengths == [MIB << 20] * BLOBS
    return {"seconds": seconds, "peak_mib": _peak_mib(), "before_mib": before}


def _ray(side: str) -> dict[str, float]:
    import ray

    from taskloom import flow, task
    from taskloom_ray import RayTaskRunner

    make_task, length_task = task(_make, name="make"), task(_length, name="length")

    @flow(task_runner=RayTaskRunner())
    def pipeline(mib: int) -> list[int]:
        return [f.result() for f in length_task.map(make_task.map([mib] * BLOBS))]

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        pipeline(0)  # workers started and taskloom imported on both sides
        before = _peak_mib()
        started = time.perf_counter()
        if side == "raw":
            make, length = ray.remote(_make), ray.remote(_length)
            lengths = ray.get([length.remote(make.remote(MIB)) for _ in range(BLOBS)])
        else:
            lengths = pipeline(MIB)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert lengths == [MIB << 20] * BLOBS
    return {"seconds": seconds, "peak_mib": _peak_mib(), "before_mib": before}


def _measure(engine: str, side: str) -> dict[str, float]:
    env = {**os.environ, "TASKLOOM_LOGGING_LEVEL": "WARNING", "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run(
        [sys.executable, __file__, engine, side], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench_data {engine} {side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run() -> list[dict[str, Any]]:
    rows = []
    for engine, plugin in (("dask", "taskloom_dask"), ("ray", "taskloom_ray")):
        if importlib.util.find_spec(plugin) is None:
            continue
        raw = min((_measure(engine, "raw") for _ in range(2)), key=lambda r: r["seconds"])
        ours = min((_measure(engine, "taskloom") for _ in range(2)), key=lambda r: r["seconds"])
        rows.append(
            {
                "runner": engine,
                "case": f"{BLOBS} x {MIB} MiB made, then measured (lengths asked for)",
                "taskloom_seconds": ours["seconds"],
                "raw_seconds": raw["seconds"],
                "ratio": ours["seconds"] / raw["seconds"],
                "taskloom_peak_rss_mib": ours["peak_mib"],
                "raw_peak_rss_mib": raw["peak_mib"],
                "taskloom_rss_before_flow_mib": ours["before_mib"],
            }
        )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3:
        result = (_dask if sys.argv[1] == "dask" else _ray)(sys.argv[2])
        print(json.dumps(result))
    else:
        for row in run():
            print(row)
