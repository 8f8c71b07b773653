"""taskloom-local: runners and storage that need nothing but this machine.

Runners ``sequential``, ``concurrent`` (also ``threads``) and ``processes``; result storages
``memory`` and ``local-file``; serializers ``pickle``, ``cloudpickle`` and ``json``.
``ProcessTaskRunner`` is imported from ``taskloom_local.processes`` on first use, so that
loading this package does not import cloudpickle or multiprocessing.
"""

from __future__ import annotations

from .runners import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner
from .storage import JSONSerializer, LocalFileStorage, MemoryStorage, PickleSerializer

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "ProcessTaskRunner":
        from .processes import ProcessTaskRunner

        return ProcessTaskRunner
    raise AttributeError(f"module 'taskloom_local' has no attribute {name!r}")


__all__ = [
    "ConcurrentTaskRunner",
    "JSONSerializer",
    "LocalFileStorage",
    "MemoryStorage",
    "PickleSerializer",
    "ProcessTaskRunner",
    "SequentialTaskRunner",
    "ThreadPoolTaskRunner",
]
