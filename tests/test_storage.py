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
