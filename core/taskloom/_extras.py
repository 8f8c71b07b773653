"""Which extra of the installed ``taskloom`` umbrella brings a plugin: the hint an unknown
name's error gives (``pip install 'taskloom[dask]'``), read from installed metadata so that
the core names no plugin.
"""

from __future__ import annotations

__all__ = ["install_hint", "known_sections"]


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
