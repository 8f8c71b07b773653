"""`StorageConformance`: what every result storage must do, as pytest tests.

The cases call the storage as taskloom does (``write``, ``read``, ``exists``, from several
threads, pickled to workers) and run real flows that persist results in it and hit its cache.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from taskloom import flow, plugins
from taskloom.caching import INPUTS
from taskloom.config import set_cli_values
from taskloom.results import ResultStorage, read_record

from . import _tasks as t
from ._observers import _captured, _class_attribute

__all__ = ["StorageConformance"]



#: Keys taskloom may hand a storage: ``cache/`` + what a user's cache_key_fn returned.
ODD_KEYS = (
    "cache/with space",
    "cache/ünïcødé-ключ-鍵",
    "cache/x=1&y=2;z,w",
    "cache/per%20cent+plus~tilde",
    "cache/dots.in.the.name",
    "cache/(parens)[brackets]{braces}!@$",
    "cache/deep/ly/nested/key",
    "results/0f8fad5b-d9cb-469f-a165-70867728950e",
)


class StorageConformance:
    """Subclass it and set ``storage``; every test here must pass on your result storage.

    ``storage`` is a registered name (built with ``storage_options``, and with ``path=`` a
    fresh temporary folder when it takes a ``path`` and the options give none), an instance,
    or a zero-argument factory. For a storage that needs a server started once per session,
    override the ``taskloom_storage`` fixture (and ``taskloom_storage_section``, which says
    how a flow selects it by name) instead.
    """

    storage: Any = None
    #: Keyword options for a storage given by name, as ``[storages.NAME]`` would give them.
    storage_options: Mapping[str, Any] = {}
    #: The runner of the flows the flow cases run.
    runner: Any = "threads"
    #: Bytes of the value `test_large_values` stores.
    large_value_bytes: int = 8 * 2**20
    #: Threads writing at once in `test_concurrent_writers`.
    writers: int = 8

    @pytest.fixture
    def taskloom_storage_section(self, tmp_path: Any) -> tuple[str, dict[str, Any]] | None:
        """The storage's registered name and ``[storages.NAME]`` options, or None (no name)."""
        spec = _class_attribute(self, "storage")
        if not isinstance(spec, str):
            return None
        from taskloom._sections import accepts

        options = dict(self.storage_options)
        if "path" not in options and accepts(plugins.lookup("result_storage", spec).load(), "path"):
            options["path"] = str(tmp_path / "storage")
        return spec, options

    @pytest.fixture
    def taskloom_storage(self, taskloom_storage_section: tuple[str, dict[str, Any]] | None) -> Any:
        spec = _class_attribute(self, "storage")
        if taskloom_storage_section is not None:
            name, options = taskloom_storage_section
            return plugins.lookup("result_storage", name).load()(**options)
        if spec is None:
            pytest.skip("No storage under test: set `storage = ...` on the class.")
        if callable(spec) and not hasattr(spec, "write"):
            return spec()  # a zero-argument factory
        return spec

    @pytest.fixture
    def prefix(self) -> str:
        # Storages such as `memory` are shared by the whole process: each test has its keys.
        return f"conformance-{uuid.uuid4().hex}"

    # -- the protocol ------------------------------------------------------------------------

    def test_round_trip(self, taskloom_storage: Any, prefix: str) -> None:
        storage = taskloom_storage
        assert isinstance(storage, ResultStorage), "a storage has write, read and exists"
        storage.write(f"results/{prefix}", b"payload\x00\xff")
        assert storage.read(f"results/{prefix}") == b"payload\x00\xff"
        assert storage.exists(f"results/{prefix}")
        storage.write(f"cache/{prefix}-empty", b"")
        assert storage.read(f"cache/{prefix}-empty") == b"", "an empty value is a value"
        assert storage.exists(f"cache/{prefix}-empty")

    def test_missing_key(self, taskloom_storage: Any, prefix: str) -> None:
        assert not taskloom_storage.exists(f"cache/{prefix}-missing")
        with pytest.raises(KeyError):
            taskloom_storage.read(f"cache/{prefix}-missing")

    def test_overwrite(self, taskloom_storage: Any, prefix: str) -> None:
        key = f"cache/{prefix}"
        taskloom_storage.write(key, b"first value, the longer one")
        taskloom_storage.write(key, b"second")
        assert taskloom_storage.read(key) == b"second", "a write replaces the whole value"

    def test_concurrent_writers(self, taskloom_storage: Any, prefix: str) -> None:
        storage, key = taskloom_storage, f"cache/{prefix}-shared"
        values = [bytes([i]) * (64 * 1024 + i) for i in range(self.writers)]
        storage.write(key, values[0])
        seen: list[bytes] = []
        errors: list[BaseException] = []
        start = threading.Barrier(self.writers + 1)

        def write(i: int) -> None:
            try:
                start.wait()
                for _ in range(3):
                    storage.write(key, values[i])
                    storage.write(f"cache/{prefix}-own-{i}", values[i])
            except BaseException as exc:
                errors.append(exc)

        def read() -> None:
            start.wait()
            while any(w.is_alive() for w in writers):
                seen.append(storage.read(key))

        writers = [threading.Thread(target=write, args=(i,)) for i in range(self.writers)]
        for thread in writers:
            thread.start()
        reader = threading.Thread(target=read)
        reader.start()
        for thread in [*writers, reader]:
            thread.join()
        assert not errors, f"a concurrent write failed: {errors[0]!r}"
        torn = [v[:16] for v in seen if v not in values]
        assert not torn, "a reader saw a value that no writer wrote whole (a torn write)"
        assert storage.read(key) in values
        for i in range(self.writers):
            assert storage.read(f"cache/{prefix}-own-{i}") == values[i], "a concurrent write was lost"

    def test_large_values(self, taskloom_storage: Any, prefix: str) -> None:
        value = os.urandom(1024) * (self.large_value_bytes // 1024)
        taskloom_storage.write(f"results/{prefix}", value)
        assert taskloom_storage.read(f"results/{prefix}") == value

    def test_names_with_odd_characters(self, taskloom_storage: Any, prefix: str) -> None:
        keys = [key.replace("/", f"/{prefix}-", 1) for key in ODD_KEYS]
        for i, key in enumerate(keys):
            taskloom_storage.write(key, f"value {i}".encode())
        for i, key in enumerate(keys):
            assert taskloom_storage.exists(key), f"{key!r} was written but does not exist"
            assert taskloom_storage.read(key) == f"value {i}".encode(), f"{key!r} read another key's value"

    def test_a_pickled_copy_reads_and_writes_the_same_values(self, taskloom_storage: Any, prefix: str) -> None:
        # Process runners send the storage to their workers, pickled.
        copy = pickle.loads(pickle.dumps(taskloom_storage))
        taskloom_storage.write(f"cache/{prefix}-a", b"from the original")
        assert copy.read(f"cache/{prefix}-a") == b"from the original"
        copy.write(f"cache/{prefix}-b", b"from the copy")
        assert taskloom_storage.read(f"cache/{prefix}-b") == b"from the copy"

    # -- through real flows --------------------------------------------------------------------

    def test_persisted_results_through_a_flow(self, taskloom_storage: Any) -> None:
        persisted = t.identity.with_options(
            persist_result=True, result_storage=taskloom_storage, result_serializer="json"
        )

        @flow(task_runner=self.runner)
        def persist_flow() -> Any:
            future = persisted.submit({"answer": 42, "text": "ünï"})
            future.wait()
            return {"state": future.state}

        state = persist_flow()["state"]
        assert state.is_completed(), f"the task run ended {state!r}: {state.message}"
        reference = state.data
        header, payload = read_record(taskloom_storage, reference.key)
        assert header["serializer"] == "json" and b'"answer": 42' in payload
        assert state.result() == {"answer": 42, "text": "ünï"}
        assert pickle.loads(pickle.dumps(state)).result() == {"answer": 42, "text": "ünï"}

    def test_cache_hits_across_flow_runs(self, taskloom_storage: Any) -> None:
        cached = t.counted.with_options(cache_policy=INPUTS, result_storage=taskloom_storage)
        value = uuid.uuid4().int % 10**9  # a cache key of this test alone

        @flow(task_runner=self.runner)
        def cache_flow() -> Any:
            future = cached.submit(value)
            return {"value": future.result(), "state": future.state.name}

        with _captured() as logs:
            assert cache_flow() == {"value": value * 10, "state": "Completed"}
            assert cache_flow() == {"value": value * 10, "state": "Cached"}, "the second run must read the stored result"
        ran = [r for r in logs.records if r.getMessage() == f"counted computed {value}"]
        assert len(ran) == 1, "a cached task must not run again"

    def test_selected_by_name_with_its_own_section(
        self, taskloom_storage_section: tuple[str, dict[str, Any]] | None
    ) -> None:
        if taskloom_storage_section is None:
            pytest.skip("The storage under test has no registered name.")
        name, options = taskloom_storage_section
        cached = t.counted.with_options(cache_policy=INPUTS, persist_result=True)
        value = uuid.uuid4().int % 10**9  # a cache key of this test alone

        @flow(task_runner=self.runner)
        def by_name() -> Any:
            future = cached.submit(value)
            return {"value": future.result(), "state": future.state}

        settings = {"results.storage": name, **{f"storages.{name}.{k}": v for k, v in options.items()}}
        undo = set_cli_values(settings)
        try:
            first, second = by_name(), by_name()
        finally:
            undo()
        assert first["value"] == second["value"] == value * 10
        assert second["state"].name == "Cached"
        storage = second["state"].data.storage
        assert isinstance(storage, ResultStorage)
        assert read_record(storage, second["state"].data.key)[0]["v"] == 1
