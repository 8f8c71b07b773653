"""taskloom-local's storages pass the storage conformance kit, as a third-party storage would."""

from __future__ import annotations

from taskloom.testing import StorageConformance


class TestLocalFileStorage(StorageConformance):
    storage = "local-file"


class TestMemoryStorage(StorageConformance):
    storage = "memory"


class TestMemoryStorageFromAFactory(StorageConformance):
    """A storage given as a zero-argument factory, here a lambda, as the kit allows."""

    storage = lambda: __import__("taskloom_local").MemoryStorage()  # noqa: E731
