"""The entry point of taskloom-csvlog: the sink's name, and its one setting."""

from __future__ import annotations

from taskloom import hookimpl
from taskloom.config import Setting

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_log_sinks() -> dict[str, str]:
    return {"csv": "taskloom_csvlog.sink:CSVSink"}


@hookimpl
def taskloom_add_settings() -> list[Setting]:
    # Declared, so `logging.csv_file` validates in taskloom.toml, is read from
    # TASKLOOM_LOGGING_CSV_FILE and shows in `taskloom config`.
    return [Setting("logging.csv_file", str, "taskloom-runs.csv", "Path of the file the 'csv' sink appends to.")]
