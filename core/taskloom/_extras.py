"""Which extra of the installed ``taskloom`` umbrella brings a plugin: the hint an unknown
name's error gives (``pip install 'taskloom[dask]'``), read from installed metadata so that
the core names no plugin.

Both are read from installed packages' metadata (a few hundred file reads) once per loading of
the plugins: the settings ask on every flow run, to warn about a setting of a plugin that is
missing or disabled, and installed packages do not change under a running flow.
`taskloom.plugins.reset` forgets them with the plugins.
"""

from __future__ import annotations

import functools

__all__ = ["forget", "install_hint", "known_sections"]


@functools.cache
def _umbrella_extras() -> dict[str, str]:
    """Distribution or extra name -> the extra of the installed ``taskloom`` umbrella that
    brings it, read from the umbrella's metadata (``Requires-Dist: taskloom-dask; extra ==
    "dask"``), so the core knows no plugin by name. Of several extras that bring the same
    distribution, the smallest wins (``dask``, not ``all``)."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    try:
        requirements = requires("taskloom") or []
    except PackageNotFoundError:
        return {}
    pattern = re.compile(r"\s*([A-Za-z0-9._-]+).*;.*extra\s*==\s*['\"]([^'\"]+)['\"]")
    brought: dict[str, set[str]] = {}
    for requirement in requirements:
        found = pattern.match(requirement)
        if found:
            dist = found.group(1).lower().replace("_", "-")
            brought.setdefault(found.group(2), set()).add(dist)
    extras: dict[str, str] = {}
    for extra, dists in sorted(brought.items(), key=lambda item: len(item[1])):
        extras.setdefault(extra, extra)
        for dist in dists:
            extras.setdefault(dist, extra)
            extras.setdefault(dist.removeprefix("taskloom-"), extra)
    return extras


@functools.cache
def known_sections() -> dict[str, str]:
    """Settings section -> the distribution that declares it, for plugins that may be absent.

    Read from the ``taskloom.sections`` entry points of installed packages (the ``taskloom``
    umbrella lists its extras' sections there), so that a config file setting a section of a
    missing or disabled plugin gets a warning, not an error, and the core names no plugin.
    """
    from importlib.metadata import entry_points

    return {
        ep.name: ep.value.partition(":")[0].replace("_", "-")
        for ep in entry_points(group="taskloom.sections")
    }


def install_hint(name: str) -> str | None:
    """``pip install 'taskloom[EXTRA]'`` for a runner, storage or plugin ``name`` that an extra
    of the installed umbrella brings (``"dask"``, ``"DaskTaskRunner"``), else None."""
    key = name.lower().removesuffix("taskrunner") or name.lower()
    extra = _umbrella_extras().get(key)
    return f"pip install 'taskloom[{extra}]'" if extra else None


def forget() -> None:
    """Read the metadata again on next use (after the plugins are reset)."""
    _umbrella_extras.cache_clear()
    known_sections.cache_clear()
