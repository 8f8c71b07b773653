"""The fsspec storage passes the storage conformance kit: on S3 (a real moto server, see
conftest.py) and on a local folder through ``file://``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("taskloom_fsspec", reason="needs taskloom-fsspec (pip install -e plugins/fsspec)")

from taskloom.testing import StorageConformance

if TYPE_CHECKING:
    from conftest import S3  # the fixture's type; not imported at run time (name clashes)


@pytest.mark.slow
class TestFsspecOnS3(StorageConformance):
    large_value_bytes = 6 * 2**20  # above s3fs's 5 MiB block: a multipart upload

    @pytest.fixture
    def taskloom_storage_section(self, s3: S3) -> tuple[str, dict[str, Any]]:
        return "fsspec", {"path": s3.url(), "storage_options": s3.storage_options}

    @pytest.fixture
    def taskloom_storage(self, taskloom_storage_section: tuple[str, dict[str, Any]]) -> Any:
        from taskloom_fsspec import FsspecStorage

        return FsspecStorage(**taskloom_storage_section[1])


class TestFsspecOnAFolder(StorageConformance):
    storage = "fsspec"

    @pytest.fixture
    def taskloom_storage_section(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "fsspec", {"path": (tmp_path / "results").as_uri()}
