"""The seed's third example on Ray: the same two tasks on a private local Ray (about 7.5 s
once Ray has started, which takes a few seconds more).

Prefect 2's "Flow and task execution" tutorial with only the runner changed. The two tasks
run at the same time in two Ray worker processes; what they print comes back to this console
as log lines of their task runs. ``RayTaskRunner()`` starts a Ray of its own on 127.0.0.1 for
the flow run and stops it afterwards; ``RayTaskRunner("127.0.0.1:6379")`` would run the same
tasks on a head started with ``ray start --head`` and leave it running.
"""

import time

from taskloom import flow, task
from taskloom_ray import RayTaskRunner


@task
def print_values3(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")


@flow(task_runner=RayTaskRunner())
def my_flow3():
    print_values3.submit(["AAAA"] * 15)
    print_values3.submit(["BBBB"] * 10)


if __name__ == "__main__":
    my_flow3()
