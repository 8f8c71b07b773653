"""taskloom-local: runners and storage that need nothing but this machine.

Runners ``sequential``, ``concurrent`` (also ``threads``); result storages ``memory`` and
``local-file``; serializers ``pickle`` and ``json``.
"""

from __future__ import annotations

from .runners import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner
from .storage import JSONSerializer, LocalFileStorage, MemoryStorage, PickleSerializer

__version__ = "0.1.0"

__all__ = [
    "ConcurrentTaskRunner",
    "JSONSerializer",
    "LocalFileStorage",
    "MemoryStorage",
    "PickleSerializer",
    "SequentialTaskRunner",
    "ThreadPoolTaskRunner",
]
