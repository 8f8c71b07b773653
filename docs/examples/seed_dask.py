"""The seed's third example: the same two tasks on a temporary Dask cluster (about 7.5 s).

Prefect 2's "Flow and task execution" tutorial with only the import changed. The tasks run in
parallel in two Dask worker processes; the guard below matters, because the cluster starts its
worker processes by importing this file again.
"""

import time

from taskloom import flow, task
from taskloom_dask import DaskTaskRunner


@task
def print_values3(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")


@flow(task_runner=DaskTaskRunner())
def my_flow3():
    print_values3.submit(["AAAA"] * 15)
    print_values3.submit(["BBBB"] * 10)


if __name__ == "__main__":
    my_flow3()
