"""The flow's own modules travel by value, as its script does.

Workers on other hosts can import what is installed there, but not the modules that sit beside
the flow's script (``helpers.py`` next to ``flow.py``). When a runner that leaves the process
starts (its `CallEncoder` is made), those modules are marked to be pickled by value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["BY_VALUE", "project_folders", "ship_flow_modules"]

#: Module names whose code travels by value: the script's, and the flow's own modules.
BY_VALUE: set[bytes] = {b"__main__"}

#: Folders of the flows being run (``taskloom run`` adds the script's); ``python flow.py``
#: adds its own by being ``__main__``.
project_folders: set[Path] = set()


#: Modules already looked at (name -> the module object), for the folders in `_seen_for`.
_seen: dict[str, Any] = {}
_seen_for: frozenset[Path] = frozenset()


def _flow_folders() -> set[Path]:
    folders = set(project_folders)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        folder = Path(main_file).resolve().parent
        if not (folder / "activate").exists():  # a virtualenv's bin/: a console script
            folders.add(folder)
    return folders


def _is_flow_module(name: str, module: Any, folders: set[Path]) -> bool:
    file = getattr(module, "__file__", None)
    if not file or name == "__main__" or name.split(".")[0].startswith("taskloom"):
        return False
    if "site-packages" in file or "dist-packages" in file:
        return False
    path = Path(file).resolve()
    return any(path.is_relative_to(folder) for folder in folders)


def ship_flow_modules() -> list[str]:
    """Mark the modules of the flow's own folder (beside its script, not installed) to travel
    by value, as the script itself does: workers on other hosts cannot import them.

    Called when a runner that leaves the process starts; returns the names newly marked.
    """
    folders = _flow_folders()
    if not folders:
        return []
    global _seen_for
    if _seen_for != folders:  # other folders: every module is looked at again
        _seen.clear()
        _seen_for = frozenset(folders)
    marked = []
    for name, module in list(sys.modules.items()):
        # Resolving a module's path costs tens of microseconds, and a process with a cluster
        # client has hundreds of modules: each is looked at once per set of folders, not at
        # every flow run.
        if _seen.get(name) is module or getattr(module, "__taskloom_by_value__", False):
            continue
        _seen[name] = module
        if not _is_flow_module(name, module, folders):
            continue
        try:
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        except (ImportError, ValueError):
            continue
        setattr(module, "__taskloom_by_value__", True)  # noqa: B010 - a module's own flag
        BY_VALUE.add(name.encode())
        marked.append(name)
    return marked
