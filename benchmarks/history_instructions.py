"""One flow of N no-op tasks on a runner, with taskloom-history off or on: run it under
callgrind to count instructions, which the machine's load does not move (wall-clock figures
on a shared 2-core machine swing by a quarter from run to run).

    for mode in off on; do for n in 0 1000; do
      valgrind --tool=callgrind --callgrind-out-file=cg.$mode.$n python benchmarks/history_instructions.py $mode concurrent $n
    done; done

Per task: (Ir at 1000 - Ir at 0) / 1000, for each mode; the ratio of the two is the cost.
A fourth argument ``map`` maps the task over the range instead of submitting it N times.
"""

import os
import sys
import tempfile
import warnings

os.environ["TASKLOOM_LOGGING_LEVEL"] = "WARNING"
mode, runner, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mapped = sys.argv[4:] == ["map"]
os.environ["TASKLOOM_DISABLE_PLUGINS"] = "rich,otel" + (",history" if mode == "off" else "")
if mode == "on":
    os.environ["TASKLOOM_HISTORY_PATH"] = tempfile.mkdtemp() + "/history.db"
warnings.simplefilter("ignore")

from taskloom import flow, task  # noqa: E402


@task
def noop(x: int) -> int:
    return x


@flow(task_runner=runner)
def tasks(count: int) -> None:
    futures = noop.map(range(count)) if mapped else [noop.submit(i) for i in range(count)]
    for future in futures:
        future.result()


tasks(10)  # imports, plugin loading, the history file: not counted
tasks(n)
