"""The processes runner: CPU-bound tasks in spawned worker processes."""

from taskloom import flow, task
from taskloom.runners import ProcessTaskRunner


def init_worker(name: str) -> None:
    print(f"worker {name} ready")


@task
def count_primes(limit: int) -> int:
    return sum(all(n % d for d in range(2, int(n**0.5) + 1)) for n in range(2, limit))


@flow(task_runner=ProcessTaskRunner(max_workers=2, initializer=init_worker, initargs=("primes",)))
def primes() -> list[int]:
    return [f.result() for f in count_primes.map([2_000, 4_000, 8_000])]


if __name__ == "__main__":
    print(primes())
