"""taskloom-fsspec: a result storage for any fsspec URL, shared by every worker of a cluster.

    from taskloom.results import get_result_storage

    storage = get_result_storage("fsspec", path="s3://bucket/results",
                                 storage_options={"profile": "ci"})

Importing this package does not import fsspec: `FsspecStorage` imports it when it is built,
so a process that never uses the storage never pays for it.
"""

from __future__ import annotations

from .errors import FsspecStorageError
from .storage import FsspecStorage

__version__ = "0.1.0"

__all__ = ["FsspecStorage", "FsspecStorageError"]
