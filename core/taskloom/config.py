"""Settings: code > CLI > environment > file > defaults, one schema for all of them.

The file is the nearest ``taskloom.toml`` (top level) or ``pyproject.toml`` with a
``[tool.taskloom]`` table, from the working directory upwards; in one directory
``taskloom.toml`` wins. An environment variable is ``TASKLOOM_`` + the key's path in capitals
joined by ``_``: ``logging.level`` is ``TASKLOOM_LOGGING_LEVEL``, option ``address`` of runner
``dask`` is ``TASKLOOM_RUNNERS_DASK_ADDRESS``.

A plugin's runner, log sink or result storage gets its options from a section of its own,
named after it: ``[runners.NAME]``, ``[sinks.NAME]``, ``[storages.NAME]``; a key in one
section never reaches another plugin.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from . import _current

__all__ = ["CORE_SETTINGS", "ConfigError", "Setting", "Settings", "coerce", "load_settings"]


class ConfigError(ValueError):
    """A setting that does not exist or has the wrong type; the message names key and source."""


@attrs.frozen
class Setting:
    """One configuration key: its dotted path, type, default and a line of help."""

    key: str
    type: type
    default: Any = None
    help: str = ""

    @property
    def env_var(self) -> str:
        return "TASKLOOM_" + self.key.upper().replace(".", "_").replace("-", "_")


CORE_SETTINGS = (
    Setting("task_runner", str, "concurrent", "The runner flows use unless code names one."),
    Setting("logging.level", str, "INFO", "Lowest level of run logs shown: DEBUG, INFO, ..."),
    Setting("logging.sinks", list, ["console"], "Log sinks to send run logs to, by name."),
    Setting("logging.file", str, None, "Older spelling of [sinks.file] path."),
    Setting("logging.json_file", str, None, "Older spelling of [sinks.json] path."),
    Setting("results.persist", bool, False, "Persist every task's result by default."),
    Setting("results.storage", str, "local-file", "Result storage, by name."),
    Setting("results.path", str, ".taskloom/storage", "Where the local-file storage writes."),
    Setting("results.serializer", str, "pickle", "Result serializer, by name."),
    Setting("tasks.default_retries", int, 0, "Retries of tasks that do not set retries."),
    Setting(
        "tasks.default_retry_delay_seconds", float, 0.0,
        "Seconds between retries of tasks that do not set retry_delay_seconds.",
    ),
)

# Tables whose keys are free: options of a named runner, sink or storage, limits of a named tag.
_LIMITS = "concurrency_limits"
#: The sections of plugin options: table name -> the registry kind whose names it holds.
SECTIONS = {"runners": "task_runner", "sinks": "log_sink", "storages": "result_storage"}
SECTION_LABELS = {"runners": "runner", "sinks": "log sink", "storages": "result storage"}
_PROCESS_ENV = frozenset({"TASKLOOM_DISABLE_PLUGINS", "TASKLOOM_TRACE_HOOKS"})
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}

# Set by `taskloom run` for the flows it runs in this process.
_cli_values: dict[str, Any] = {}


def coerce(raw: str, kind: type | None, what: str) -> Any:
    """Turn an environment or command-line string into ``kind``; ``None`` guesses (JSON)."""
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind in (int, float):
            return kind(text)
        if kind is str:
            return raw
        if kind in (list, dict):
            if kind is list and not text.startswith("["):
                return [part.strip() for part in text.split(",") if part.strip()]
            value = json.loads(text)
            if not isinstance(value, kind):
                raise ValueError(text)
            return value
    except ValueError:
        raise ConfigError(
            f"{what} must be {kind.__name__ if kind else 'a value'}, got {raw!r}."
        ) from None
    try:
        return json.loads(text)
    except ValueError:
        return raw


def _check_type(value: Any, setting: Setting, where: str) -> Any:
    kind = setting.type
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(
            f"Setting {setting.key!r} in {where} must be of type {kind.__name__}, "
            f"got {value!r} ({type(value).__name__})."
        )
    return value


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest configuration file from ``start`` upwards, and its taskloom table."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "taskloom.toml"
        if candidate.is_file():
            return candidate, _read_toml(candidate)
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            table = _read_toml(candidate).get("tool", {}).get("taskloom")
            if isinstance(table, dict):
                return candidate, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in table.items():
        path = f"{prefix}{key}"
        # [runners.NAME], [sinks.NAME], [storages.NAME] are one plugin's options each.
        if isinstance(value, dict) and path != _LIMITS and prefix.rstrip(".") not in SECTIONS:
            yield from _flatten(value, path + ".")
        else:
            yield path, value


@attrs.frozen
class Settings:
    """Effective settings and where each came from (``default``, a file, ``env ...``, ``cli``)."""

    values: dict[str, Any]
    sources: dict[str, str]
    runners: dict[str, dict[str, tuple[Any, str]]]
    concurrency_limits: dict[str, int]
    #: Options of log sinks and result storages by name, as ``runners`` holds runners'.
    sinks: dict[str, dict[str, tuple[Any, str]]] = attrs.field(factory=dict)
    storages: dict[str, dict[str, tuple[Any, str]]] = attrs.field(factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def runner_options(self, name: str) -> dict[str, tuple[Any, str]]:
        """Options of runner ``name`` from file, env and CLI, each with its source."""
        return dict(self.runners.get(name, {}))

    def section(self, table: str, name: str) -> dict[str, tuple[Any, str]]:
        """Options in ``[TABLE.NAME]`` (``table`` is runners, sinks or storages), with sources."""
        return dict(getattr(self, table).get(name, {}))

    def table(self) -> list[tuple[str, Any, str]]:
        """Every effective value as (key, value, source), for ``taskloom config``."""
        rows = [(k, self.values[k], self.sources[k]) for k in sorted(self.values)]
        for table in SECTIONS:
            for name, options in sorted(getattr(self, table).items()):
                rows += [(f"{table}.{name}.{k}", v, src) for k, (v, src) in sorted(options.items())]
        rows += [
            (f"concurrency_limits.{tag}", n, self.sources.get(f"concurrency_limits.{tag}", ""))
            for tag, n in sorted(self.concurrency_limits.items())
        ]
        return rows


class _PluginRegistry(Protocol):
    """What the settings ask of the plugin registry (`taskloom.plugins`, a layer above)."""

    def get_plugin_manager(self) -> Any: ...
    def registered(self, kind: str) -> Mapping[str, Any]: ...
    def known_sections(self) -> dict[str, str]: ...
    def install_hint(self, name: str) -> str | None: ...


def _plugins() -> _PluginRegistry:
    registry: _PluginRegistry = _current.plugin_registry()
    return registry


def _schema() -> dict[str, Setting]:
    schema = {s.key: s for s in CORE_SETTINGS}
    for batch in _plugins().get_plugin_manager().hook.taskloom_add_settings():
        schema.update((setting.key, setting) for setting in batch or ())
    return schema


def load_settings(
    start: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Settings:
    """Read defaults, the config file, the environment and CLI values into one `Settings`."""
    environ = os.environ if environ is None else environ
    cli = _cli_values if cli is None else cli
    schema = _schema()
    values = {key: s.default for key, s in schema.items()}
    sources = dict.fromkeys(schema, "default")
    sections: dict[str, dict[str, dict[str, tuple[Any, str]]]] = {table: {} for table in SECTIONS}
    limits: dict[str, int] = {}

    @functools.cache
    def names_of(table: str) -> set[str]:
        return set(_plugins().registered(SECTIONS[table]))

    found = find_config_file(start)
    if found is not None:
        path, table = found
        where = str(path)
        for key, value in _flatten(table):
            head, _, name = key.partition(".")
            if key in schema:
                values[key] = _check_type(value, schema[key], where)
                sources[key] = where
            elif head in SECTIONS:
                if not name or not isinstance(value, dict):
                    raise ConfigError(
                        f"[{key}] in {where} must be a table of options of one "
                        f"{SECTION_LABELS[head]}, such as [{head}.NAME]."
                    )
                if name not in names_of(head):
                    warnings.warn(
                        f"{where} sets options for {SECTION_LABELS[head]} {name!r}, which is not installed.",
                        stacklevel=2,
                    )
                for option, v in value.items():
                    sections[head].setdefault(name, {})[option] = (v, where)
            elif key == _LIMITS:
                if not isinstance(value, dict):
                    raise ConfigError(f"[concurrency_limits] in {where} must be a table.")
                for tag, n in value.items():
                    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                        raise ConfigError(
                            f"Concurrency limit {tag!r} in {where} must be a whole number "
                            f"of at least 0, got {n!r}."
                        )
                    limits[tag] = n
                    sources[f"{_LIMITS}.{tag}"] = where
            elif head in _plugins().known_sections():
                warnings.warn(
                    f"{where} sets {key!r} for {_absent_owner(head)}; the setting is ignored.",
                    stacklevel=2,
                )
            elif _plugins().install_hint(head) is not None:
                warnings.warn(
                    f"{where} sets {key!r} for plugin {head!r}, which is not installed.",
                    stacklevel=2,
                )
            else:
                known = ", ".join(sorted(schema))
                raise ConfigError(
                    f"Unknown setting {key!r} in {where}. Known settings: {known}, "
                    "[runners.NAME], [sinks.NAME], [storages.NAME] and [concurrency_limits]."
                )

    env_names = {s.env_var: s for s in schema.values()}
    for var in sorted(environ):
        if not var.startswith("TASKLOOM_") or var in _PROCESS_ENV:
            continue
        raw = environ[var]
        if var in env_names:
            setting = env_names[var]
            values[setting.key] = coerce(raw, setting.type, f"Environment variable {var}")
            sources[setting.key] = f"env {var}"
        elif (env_group := _section_of(var, SECTIONS)) is not None:
            rest = var[len(f"TASKLOOM_{env_group.upper()}_") :]
            match = max(
                (n for n in names_of(env_group) if rest.startswith(_env_part(n) + "_")),
                key=len,
                default=None,
            )
            if match is None:
                warnings.warn(
                    f"{var} names no installed {SECTION_LABELS[env_group]}; it is ignored.", stacklevel=2
                )
                continue
            option = rest[len(_env_part(match)) + 1 :].lower()
            sections[env_group].setdefault(match, {})[option] = (raw, f"env {var}")
        elif var.startswith("TASKLOOM_CONCURRENCY_LIMITS_"):
            tag = var[len("TASKLOOM_CONCURRENCY_LIMITS_") :].lower()
            limits[tag] = coerce(raw, int, f"Environment variable {var}")
            sources[f"{_LIMITS}.{tag}"] = f"env {var}"
        elif (section := _section_of(var, _plugins().known_sections())) is not None:
            warnings.warn(f"{var} is a setting of {_absent_owner(section)}; it is ignored.", stacklevel=2)
        else:
            warnings.warn(f"{var} is not a taskloom setting; it is ignored.", stacklevel=2)

    for key, value in cli.items():
        if key.split(".", 1)[0] in SECTIONS:
            group, name, option = key.split(".", 2)
            sections[group].setdefault(name, {})[option] = (value, "cli")
        else:
            values[key] = value
            sources[key] = "cli"
    return Settings(
        values, sources, sections["runners"], limits, sinks=sections["sinks"], storages=sections["storages"]
    )


def _env_part(name: str) -> str:
    return name.upper().replace("-", "_")


def _section_of(var: str, tables: Iterable[str]) -> str | None:
    return next((t for t in tables if var.startswith(f"TASKLOOM_{t.upper()}_")), None)


def set_cli_values(values: Mapping[str, Any]) -> Callable[[], None]:
    """Install values given on the command line; return a function that removes them."""
    _cli_values.update(values)

    def undo() -> None:
        for key in values:
            _cli_values.pop(key, None)

    return undo


def _absent_owner(section: str) -> str:
    """Who a settings section of a missing or disabled plugin belongs to."""
    registry = _plugins()
    dist = registry.known_sections()[section]
    hint = registry.install_hint(dist)
    return f"{dist}, which is not installed or is disabled" + (f" ({hint})" if hint else "")
