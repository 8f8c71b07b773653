"""Async: async tasks awaited in an async flow, submitted to a runner, and sync tasks beside them."""

import asyncio

from taskloom import flow, task


@task
async def fetch(city: str) -> int:
    await asyncio.sleep(0.1)
    return len(city)


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
async def weather() -> int:
    oslo = await fetch("Oslo")                      # awaited directly
    others = fetch.map(["Lima", "Nairobi"])         # submitted to the runner
    return total([oslo, *[f.result() for f in others]])


if __name__ == "__main__":
    print(asyncio.run(weather()))
