"""The ``sqlite`` result storage, reached by name as taskloom reaches it.

`TestConformance` runs taskloom's storage conformance kit on it (round trips, missing keys,
overwrites, concurrent writers, large values, odd key names, results and cache hits through
real flows); the tests after it check what is particular to SQLite.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sqlite3
from pathlib import Path

import pytest

from taskloom import flow, task
from taskloom.caching import INPUTS
from taskloom.results import ResultStorage, get_result_storage, get_serializer
from taskloom.testing import StorageConformance


class TestConformance(StorageConformance):
    storage = "sqlite"
    # As [storages.sqlite] in taskloom.toml would give them; the kit adds a fresh path.
    storage_options = {"timeout": 10.0}


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


def test_a_failed_write_leaves_the_old_value(storage: ResultStorage) -> None:
    storage.write("k", b"old")
    with pytest.raises(TypeError, match="serialize the value first"):
        storage.write("k", "not bytes")  # type: ignore[arg-type]
    assert storage.read("k") == b"old"


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
    for var in [v for v in os.environ if v.startswith("TASKLOOM_") and v != "TASKLOOM_HISTORY_PATH"]:
        monkeypatch.delenv(var)
    # The storage's own section: [storages.sqlite] path = ..., timeout = 5 in taskloom.toml.
    monkeypatch.setenv("TASKLOOM_STORAGES_SQLITE_PATH", str(tmp_path / "results"))
    monkeypatch.setenv("TASKLOOM_STORAGES_SQLITE_TIMEOUT", "5")
    mark = tmp_path / "ran"

    @flow(task_runner="sequential")
    def squares() -> tuple[int, str]:
        future = square.submit(7, str(mark))
        return future.result(), future.state.name

    assert squares() == (49, "Completed")
    mark.unlink()
    assert squares() == (49, "Cached"), "the second flow run must read the result back from SQLite"
    assert not mark.exists(), "a cached task must not run again"
    assert not (tmp_path / ".taskloom").exists(), "results.path is not used when the section sets a path"
    with sqlite3.connect(tmp_path / "results" / "results.sqlite") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (1,)
