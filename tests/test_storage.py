"""The local result storages and serializers, as plugins deliver them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from taskloom.results import ResultStorage, get_result_storage, get_serializer


def test_local_file_round_trip_and_missing_key(tmp_path: Path) -> None:
    storage = get_result_storage("local-file", path=str(tmp_path))
    assert isinstance(storage, ResultStorage)
    storage.write("a/b/result", b"payload")
    assert storage.read("a/b/result") == b"payload"
    assert storage.exists("a/b/result") and not storage.exists("other")
    with pytest.raises(KeyError):
        storage.read("other")


def test_local_file_never_shows_a_partial_write(tmp_path: Path) -> None:
    storage = get_result_storage("local-file", path=str(tmp_path))
    big_a, big_b = b"a" * 2_000_000, b"b" * 2_000_000
    storage.write("key", big_a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = storage.read("key")
            seen.add(data[:1] * len(data) == data and len(data))  # type: ignore[arg-type]

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(20):
        storage.write("key", big_b if i % 2 else big_a)
    stop.set()
    thread.join()
    assert seen <= {2_000_000}, "a reader saw a file of the wrong size or mixed content"
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_write_leaves_the_old_value(tmp_path: Path) -> None:
    storage = get_result_storage("local-file", path=str(tmp_path))
    storage.write("key", b"old")

    class Exploding(bytes):
        pass

    with pytest.raises(TypeError):
        storage.write("key", object())  # type: ignore[arg-type]
    assert storage.read("key") == b"old"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_keys_cannot_escape_the_storage(tmp_path: Path) -> None:
    storage = get_result_storage("local-file", path=str(tmp_path))
    with pytest.raises(ValueError, match="not a relative path inside the storage"):
        storage.write("../outside", b"x")


def test_memory_storage_and_serializers() -> None:
    storage = get_result_storage("memory")
    storage.write("k", get_serializer("json").dumps({"x": [1, 2]}))
    assert get_serializer("json").loads(storage.read("k")) == {"x": [1, 2]}
    assert get_serializer("pickle").loads(get_serializer("pickle").dumps({1, 2})) == {1, 2}


def test_unknown_storage_names_the_installed_ones() -> None:
    from taskloom.plugins import PluginError

    with pytest.raises(PluginError) as info:
        get_result_storage("s4")
    message = str(info.value)
    assert message.startswith("Unknown result storage 's4'. Installed result storages: ")
    assert "'local-file'" in message and "'memory'" in message


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path) -> None:
    import os
    import stat

    from taskloom.results import atomic_write_file

    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    atomic_write_file(tmp_path / "atomic", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


# -- results and hosts: relative paths resolved in the flow's process, one warning ------------


def _persisting_flow(runner: object) -> object:
    from taskloom import flow, task

    @task(persist_result=True)
    def answer() -> int:
        return 42

    @flow(task_runner=runner)
    def persisting() -> object:
        future = answer.submit()
        future.wait()
        return {"state": future.state}

    return persisting


class _FarThreads:
    """The thread runner, declaring (as a cluster runner given an address does) that its
    workers may run on other hosts."""

    @staticmethod
    def make() -> object:
        from taskloom_local import ConcurrentTaskRunner

        class FarThreads(ConcurrentTaskRunner):
            remote_workers = True

        return FarThreads()


def test_a_relative_results_path_is_resolved_in_the_flows_process(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, run_logs: object
) -> None:
    monkeypatch.setenv("TASKLOOM_RESULTS_PATH", "results")
    state = _persisting_flow("concurrent")()["state"]  # type: ignore[operator]
    assert state.data.storage.path == in_tmp / "results"
    assert [p.parent.name for p in (in_tmp / "results").rglob("*") if p.is_file()] == ["results"]
    assert not [m for m in run_logs.messages() if "only this host sees" in m], "a local runner needs no warning"  # type: ignore[attr-defined]


def test_host_local_results_on_a_runner_with_remote_workers_warn_once(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, run_logs: object
) -> None:
    from taskloom import plugins

    monkeypatch.setattr(plugins, "_warned", set())
    monkeypatch.setenv("TASKLOOM_RESULTS_PATH", "results")
    persisting = _persisting_flow(_FarThreads.make())
    persisting()  # type: ignore[operator]
    persisting()  # type: ignore[operator]
    warnings = [m for m in run_logs.messages() if "only this host sees" in m]  # type: ignore[attr-defined]
    assert warnings == [
        f"Task 'answer' keeps its results in LocalFileStorage(path={str(in_tmp / 'results')!r}), which "
        "only this host sees, but runner 'concurrent' may run it on other hosts: set "
        "results.storage to a storage that every host reaches (one that writes to s3:// or gs://; "
        "`taskloom plugins` lists the installed storages), or set results.path to an absolute path "
        "on a shared filesystem that every worker mounts at the same place."
    ]


@pytest.mark.parametrize(("storage", "warns"), [("memory", True), ("local-file", False)])
def test_an_absolute_results_path_is_the_users_choice_memory_never_is(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, run_logs: object, storage: str, warns: bool
) -> None:
    from taskloom import plugins

    monkeypatch.setattr(plugins, "_warned", set())
    monkeypatch.setenv("TASKLOOM_RESULTS_STORAGE", storage)
    monkeypatch.setenv("TASKLOOM_RESULTS_PATH", str(in_tmp / "shared"))
    _persisting_flow(_FarThreads.make())()  # type: ignore[operator]
    warnings = [m for m in run_logs.messages() if "only this host sees" in m]  # type: ignore[attr-defined]
    assert len(warnings) == int(warns), warnings
    if warns:
        assert "keeps its results in MemoryStorage()" in warnings[0]
