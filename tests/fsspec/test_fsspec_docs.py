"""The Python examples of docs/storage/fsspec.md run as they are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("taskloom_fsspec", reason="needs taskloom-fsspec (pip install -e plugins/fsspec)")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "storage" / "fsspec.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_example_runs(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Building an S3 storage contacts nothing, so the bucket and profile names need not exist.
    if "s3://" in source:
        pytest.importorskip("s3fs")
    exec(compile(source, str(PAGE), "exec"), {"__name__": "docs_example"})
    if "KeyError" in source:
        assert "a missing key is a KeyError" in capsys.readouterr().out
