"""``taskloom new-plugin``: write a new plugin package from the templates in ``_templates/``.

The templates are plain files shipped inside taskloom-core, filled with `string.Template`
(``$name`` placeholders: Python code is full of braces, never of dollars). ``common/`` holds
what every plugin has (pyproject.toml, the package's ``__init__``); ``runner/``, ``storage/``
and ``sink/`` hold the entry-point module, the code, a README and the tests of one kind. In
template paths, ``__module__`` stands for the package's import name and a ``.tmpl`` suffix is
dropped. What is generated works as it is, so a new author starts from green tests.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "ScaffoldError", "add_command", "render", "scaffold"]

#: Each kind: the module that holds the code, and the suffix of its class name.
KINDS = {"runner": ("runner", "TaskRunner"), "storage": ("storage", "Storage"), "sink": ("sink", "Sink")}

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class ScaffoldError(Exception):
    """The plugin cannot be written as asked; the message says what to change."""


def _placeholders(name: str, kind: str) -> dict[str, str]:
    from . import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    module_stem, class_suffix = KINDS[kind]
    words = name.split("-")
    return {
        "name": name,
        "kind": kind,
        "dist": f"taskloom-{name}",
        "module": "taskloom_" + "_".join(words),
        "impl_module": module_stem,
        "class_name": "".join(w.capitalize() for w in words) + class_suffix,
        "env_name": "_".join(words).upper(),
        "core_requirement": f"taskloom-core>={major}.{minor},<{major}.{minor + 1}",
    }


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, relative + "/")
        elif entry.name.endswith(".tmpl"):
            yield relative.removesuffix(".tmpl"), entry


def render(name: str, kind: str) -> dict[str, str]:
    """The files of a new plugin package, as {relative path: text}, without writing them."""
    if kind not in KINDS:
        raise ScaffoldError(f"Unknown plugin kind {kind!r}: choose one of {', '.join(KINDS)}.")
    name = name.removeprefix("taskloom-")
    if not _NAME.match(name):
        raise ScaffoldError(
            f"Plugin name {name!r} must be lowercase letters and digits, words joined by single "
            "hyphens, starting with a letter (for example 'my-runner')."
        )
    values = _placeholders(name, kind)
    templates = resources.files("taskloom") / "_templates"
    files: dict[str, str] = {}
    for folder in ("common", kind):
        for relative, entry in _walk(templates / folder):
            path = relative.replace("__module__", values["module"])
            files[path] = string.Template(entry.read_text(encoding="utf-8")).substitute(values)
    return files


def scaffold(name: str, kind: str = "runner", directory: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Write a new plugin package into ``directory`` (default ``./taskloom-NAME``).

    The directory must not exist or be empty, so that nothing of the author's is overwritten.
    Returns the directory and the files written.
    """
    files = render(name, kind)
    target = Path(directory) if directory is not None else Path.cwd() / f"taskloom-{name.removeprefix('taskloom-')}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty folder: choose another folder with --dir.")
    written = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return target, sorted(written)


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    try:
        target, written = scaffold(args.name, args.kind, args.dir)
    except (ScaffoldError, OSError) as exc:
        print(f"taskloom: error: {exc}", file=sys.stderr)
        return 2
    print(f"Created the {args.kind} plugin {target.name} in {target}:")
    for path in written:
        print(f"    {path.relative_to(target)}")
    print("Next:")
    print(f"    cd {target}")
    print("    pip install -e '.[test]'")
    print("    pytest")
    return 0


def add_command(subparsers: Any) -> None:
    """Add ``new-plugin`` to the ``taskloom`` command line."""
    command = subparsers.add_parser(
        "new-plugin",
        help="write a new plugin package (a runner, result storage or log sink) to start from",
        description="Write a pip-installable taskloom plugin package with its entry point, "
        "code, README and tests, ready for `pip install -e .` and `pytest`.",
    )
    command.add_argument("name", metavar="NAME", help="the name users will write, e.g. my-runner")
    command.add_argument("--kind", choices=sorted(KINDS), default="runner", help="what the plugin provides (default: runner)")
    command.add_argument("--dir", metavar="PATH", help="the folder to create (default: ./taskloom-NAME); must be empty")
    command.set_defaults(func=_cmd_new_plugin)
