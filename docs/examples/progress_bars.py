"""Live progress bars: one per task name, with done/total and failures.

Install the display with `pip install 'taskloom[rich]'` and run this file in a terminal.
With standard error redirected (`python progress_bars.py 2> log.txt`) it runs as any flow,
without bars; `TASKLOOM_PROGRESS_ENABLED=false` turns them off on a terminal too.
"""

import random
import time

from taskloom import flow, task, wait


@task
def download(page: int) -> int:
    time.sleep(random.uniform(0.01, 0.08))
    return page * 100


@task
def parse(size: int) -> int:
    time.sleep(random.uniform(0.01, 0.05))
    if size % 700 == 0:
        raise ValueError(f"page of {size} bytes is corrupt")
    return size // 10


@task
def thumbnail(image: int) -> str:
    time.sleep(random.uniform(0.02, 0.1))
    return f"thumb-{image}"


@flow
def images(count: int) -> int:
    # A subflow: its task runs add rows to the display of the flow that called it.
    return len([f.result() for f in thumbnail.map(range(count))])


@flow
def crawl(pages: int = 60) -> dict:
    sizes = download.map(range(1, pages + 1))
    parsed = parse.map(sizes)           # every seventh page fails: a red "N failed"
    thumbs = images(20)
    wait(parsed)
    ok = sum(f.state.is_completed() for f in parsed)
    # Returning a value, not the futures, keeps the flow Completed despite the failures.
    return {"parsed": ok, "failed": pages - ok, "thumbnails": thumbs}


if __name__ == "__main__":
    print(crawl())
