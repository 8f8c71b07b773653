"""The ``sqlite`` result storage, reached by name as taskloom reaches it."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sqlite3
import threading
from pathlib import Path

import pytest

from taskloom import flow, task
from taskloom.caching import INPUTS
from taskloom.results import ResultStorage, get_result_storage, get_serializer


@pytest.fixture
def storage(tmp_path: Path) -> ResultStorage:
    return get_result_storage("sqlite", path=str(tmp_path / "results.sqlite"))


def test_round_trip_and_missing_key(storage: ResultStorage, tmp_path: Path) -> None:
    assert isinstance(storage, ResultStorage)
    assert not storage.exists("answer")
    assert not (tmp_path / "results.sqlite").exists(), "a read must not create the file"
    storage.write("answer", get_serializer("json").dumps({"x": 42}))
    assert get_serializer("json").loads(storage.read("answer")) == {"x": 42}
    assert storage.exists("answer") and not storage.exists("other")
    with pytest.raises(KeyError):
        storage.read("other")


def test_a_folder_holds_results_sqlite(tmp_path: Path) -> None:
    get_result_storage("sqlite", path=str(tmp_path / "storage")).write("k", b"v")
    assert (tmp_path / "storage" / "results.sqlite").is_file()
    (tmp_path / "existing.dir").mkdir()
    get_result_storage("sqlite", path=str(tmp_path / "existing.dir")).write("k", b"v")
    assert (tmp_path / "existing.dir" / "results.sqlite").is_file()


def test_overwrite_replaces_the_value(storage: ResultStorage) -> None:
    storage.write("k", b"old")
    storage.write("k", b"new")
    assert storage.read("k") == b"new"


def test_a_failed_write_leaves_the_old_value(storage: ResultStorage) -> None:
    storage.write("k", b"old")
    with pytest.raises(TypeError, match="serialize the value first"):
        storage.write("k", "not bytes")  # type: ignore[arg-type]
    assert storage.read("k") == b"old"


def test_readers_never_see_a_partial_write(storage: ResultStorage) -> None:
    big_a, big_b = b"a" * 1_000_000, b"b" * 1_000_000
    storage.write("key", big_a)
    seen: set[object] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = storage.read("key")
            seen.add(len(data) if data in (big_a, big_b) else "mixed")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(20):
        storage.write("key", big_b if i % 2 else big_a)
    stop.set()
    for thread in threads:
        thread.join()
    assert seen == {1_000_000}, "a reader saw a value of the wrong size or mixed content"


def _write_many(storage: ResultStorage, prefix: str) -> None:
    for i in range(50):
        storage.write(f"{prefix}-{i}", prefix.encode() * i)


def test_processes_write_to_one_file(storage: ResultStorage) -> None:
    # The storage travels to worker processes as taskloom's process runners send it: pickled.
    clone = pickle.loads(pickle.dumps(storage))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(clone, f"p{n}")) for n in range(3)]
    for worker in workers:
        worker.start()
    _write_many(storage, "main")
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for prefix in ("main", "p0", "p1", "p2"):
        assert storage.read(f"{prefix}-49") == prefix.encode() * 49


@task(persist_result=True, result_storage="sqlite", cache_policy=INPUTS)
def square(x: int, ran: str) -> int:
    Path(ran).touch()  # leaves a mark each time the function really runs
    return x * x


def test_flows_persist_and_reuse_results_in_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("TASKLOOM_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TASKLOOM_RESULTS_PATH", str(tmp_path / "results"))
    mark = tmp_path / "ran"

    @flow(task_runner="sequential")
    def squares() -> tuple[int, str]:
        future = square.submit(7, str(mark))
        return future.result(), future.state.name

    assert squares() == (49, "Completed")
    mark.unlink()
    assert squares() == (49, "Cached"), "the second flow run must read the result back from SQLite"
    assert not mark.exists(), "a cached task must not run again"
    with sqlite3.connect(tmp_path / "results" / "results.sqlite") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (1,)
