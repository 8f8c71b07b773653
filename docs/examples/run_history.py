"""Run a flow, then read its history: `taskloom runs`, `runs show` and the timeline report.

Run it with `python run_history.py`; it leaves `.taskloom/history.db` and `etl-report.html`
in the current directory.
"""

import contextlib
import random
import time
from pathlib import Path

import taskloom_history as history
from taskloom import flow, task
from taskloom.cli import main
from taskloom_local import ThreadPoolTaskRunner


@task
def extract(day: int) -> list[int]:
    time.sleep(random.uniform(0.05, 0.3))
    return list(range(day, day + 10))


@task(retries=2, retry_delay_seconds=0.1)
def transform(rows: list[int]) -> list[int]:
    time.sleep(random.uniform(0.05, 0.2))
    if rows[0] % 7 == 3 and random.random() < 0.8:
        raise ConnectionError("the lookup service timed out")
    return [r * 2 for r in rows]


@task
def load(rows: list[int]) -> int:
    time.sleep(0.05)
    if rows[0] == 2 * 13:
        raise ValueError("row 26 breaks a constraint")
    return len(rows)


@flow
def publish(total: int) -> str:
    return f"published {total} rows"


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
def etl(days: int = 16) -> str:
    random.seed(7)
    loaded = [load.submit(transform.submit(extract.submit(day))) for day in range(days)]
    for future in loaded:
        future.wait()
    # Returning a value: the flow completes although some days failed (as in Prefect).
    return publish(sum(f.result() for f in loaded if f.state.is_completed()))


if __name__ == "__main__":
    etl()
    with contextlib.closing(history.connect(Path(".taskloom/history.db"), create=False)) as conn:
        [latest] = history.recent_flow_runs(conn, limit=1)
    main(["runs", "--limit", "5"])
    main(["runs", "show", latest.id[:8]])
    main(["report", latest.id, "-o", "etl-report.html"])
