"""The ``taskloom`` command: run a flow from a file, list plugins, show settings.

Errors are one line on standard error and a non-zero exit code: 2 for bad input, 1 for a
flow run that did not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from . import __version__, _scaffold, _sections, plugins
from .config import SECTIONS, ConfigError, coerce, load_settings, set_cli_values
from .flows import Flow

__all__ = ["main"]


class UsageError(Exception):
    """Bad input on the command line; its message is the whole story."""


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} must look like key=value, got {item!r}.")
        pairs[key.strip()] = value
    return pairs


def _load_flow(target: str) -> Flow[..., Any]:
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise UsageError(f"Name the flow as FILE:FLOW (for example flows.py:my_flow), got {target!r}.")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"No such file: {path_text}.")
    sys.path.insert(0, str(path.resolve().parent))
    from ._flow_modules import project_folders

    project_folders.add(path.resolve().parent)  # its modules travel to workers by value
    # Not "__main__": the file's own `if __name__ == "__main__":` block must not run. The
    # module is not left in sys.modules, so its tasks travel to workers by value.
    namespace = runpy.run_path(str(path), run_name="__taskloom_run__")
    obj = namespace.get(name)
    if not isinstance(obj, Flow):
        flows = sorted(k for k, v in namespace.items() if isinstance(v, Flow))
        found = ", ".join(flows) if flows else "none"
        raise UsageError(f"{path_text} has no flow named {name!r}. Flows in it: {found}.")
    return obj


def _flow_parameters(flow: Flow[..., Any], raw: dict[str, str]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(flow.fn)
    except Exception:
        hints = {}
    parameters = {}
    signature = flow._signature
    for key, value in raw.items():
        if key not in signature.parameters:
            known = ", ".join(signature.parameters) or "none"
            raise UsageError(f"Flow {flow.name!r} has no parameter {key!r}. Its parameters: {known}.")
        kind = _sections.plain_type(hints.get(key))
        try:
            parameters[key] = coerce(value, kind, f"Parameter {key!r} of flow {flow.name!r}")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    return parameters


def _cmd_run(args: argparse.Namespace) -> int:
    cli_values: dict[str, Any] = {}
    options = _pairs(args.runner_option, "--runner-option")
    if options and not args.runner:
        raise UsageError("--runner-option needs --runner NAME to say which runner it is for.")
    if args.runner:
        cli_values["task_runner"] = args.runner
        plugins.lookup("task_runner", args.runner)  # an unknown name fails before loading
        for key, value in options.items():
            cli_values[f"runners.{args.runner}.{key}"] = value
    flow = _load_flow(args.target)
    parameters = _flow_parameters(flow, _pairs(args.param, "--param"))
    try:
        flow.bind((), parameters)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    undo = set_cli_values(cli_values)
    try:
        state = flow(**parameters, return_state=True)
    finally:
        undo()
    return 0 if state.is_completed() else 1


def _cmd_plugins(args: argparse.Namespace) -> int:
    infos = plugins.plugins()
    failed = plugins.failures()
    if args.json:
        # PluginInfo and PluginFailure hold exactly the JSON's fields, in its order.
        listing = {"plugins": [attrs.asdict(i) for i in infos]}
        listing["failed"] = [attrs.asdict(f) for f in failed]
        print(json.dumps(listing, indent=2))
        return 0
    if not infos:
        print("No plugins installed: pip install taskloom brings the default runners, storages and sinks.")
    for info in infos:
        print(f"{info.name} ({info.distribution} {info.version})")
        for kind, names in sorted(info.provides.items()):
            print(f"    {kind.replace('_', ' ')}s: {', '.join(sorted(names))}")
        if info.hooks:
            print(f"    hooks: {', '.join(info.hooks)}")
    for failure in failed:
        print(f"FAILED {failure.name} ({failure.distribution}): {failure.reason}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    settings = load_settings()
    typed = _typed_options(settings)
    rows = settings.table()
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        print(f"{key:<{width}} = {json.dumps(typed.get(key, value))}  ({source})")
    return 0


def _typed_options(settings: Any) -> dict[str, Any]:
    """Options of installed runners, sinks and storages as their factories will get them.

    From the environment an option is text (``"3"``); shown as the factory's type hint makes
    it (``3``), as it is when it comes from taskloom.toml. One that does not convert is shown
    as it was given (the flow run names the mistake).
    """
    typed: dict[str, Any] = {}
    for table, kind in SECTIONS.items():
        installed = plugins.registered(kind)
        for name in getattr(settings, table):
            if name not in installed:
                continue
            try:
                options = _sections.section_options(table, name, installed[name].load(), settings)
            except (ConfigError, plugins.PluginError):
                continue
            typed.update({f"{table}.{name}.{key}": value for key, value in options.items()})
    return typed


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"taskloom {__version__}")
    for info in plugins.plugins():
        print(f"  {info.distribution} {info.version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskloom", description="Run and inspect taskloom flows.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a flow from a file: taskloom run flows.py:my_flow")
    run.add_argument("target", metavar="FILE:FLOW")
    run.add_argument("--runner", help="the task runner, by name (overrides env and file, not code)")
    run.add_argument("--runner-option", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a flow parameter, converted by the flow's type hints")
    run.set_defaults(func=_cmd_run)

    listing = sub.add_parser("plugins", help="list installed plugins and what each provides")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_cmd_plugins)

    config = sub.add_parser("config", help="show every effective setting and where it came from")
    config.set_defaults(func=_cmd_config)
    version = sub.add_parser("version", help="show the versions of taskloom and its plugins")
    version.set_defaults(func=_cmd_version)
    _scaffold.add_command(sub)
    plugins.get_plugin_manager().hook.taskloom_add_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe is seen below and not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`taskloom plugins | head`): stop quietly, as `cat` does.
        # Standard output is pointed at /dev/null so that the flush at exit does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (UsageError, ConfigError, plugins.PluginError) as exc:
        print(f"taskloom: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskloom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
