"""taskloom-csvlog: run logs as rows of a CSV file."""

from __future__ import annotations

from .sink import COLUMNS, CSVSink

__version__ = "0.1.0"

__all__ = ["COLUMNS", "CSVSink"]
