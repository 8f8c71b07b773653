"""The seed's first example: two tasks interleaving on the default (thread) runner.

Prefect 2's "Flow and task execution" tutorial with only the import changed. It takes about
7.5 s: the two tasks run at the same time.
"""

import time

from taskloom import flow, task


@task
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")


@flow
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)


if __name__ == "__main__":
    my_flow()
