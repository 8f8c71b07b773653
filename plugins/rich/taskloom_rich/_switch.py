"""Whether a flow run gets the display: the ``progress.enabled`` setting, then the terminal."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from taskloom.config import ConfigError, coerce

__all__ = ["SETTING", "parse_enabled", "progress_wanted", "stream_is_terminal"]

SETTING = "progress.enabled"


def parse_enabled(value: Any, where: str | None = None) -> bool | None:
    """``True``/``False`` for a forced choice, ``None`` for ``"auto"``; ValueError otherwise.

    ``where`` names the source of the value (a file, ``env TASKLOOM_PROGRESS_ENABLED``) in
    the error.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return None
        try:
            return bool(coerce(value, bool, SETTING))  # the words every taskloom switch takes
        except ConfigError:
            pass
    source = f" ({where})" if where else ""
    raise ValueError(
        f"Setting {SETTING!r}{source} must be true, false or \"auto\", got {value!r}; "
        "the display falls back to \"auto\"."
    )


def stream_is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal that nobody else draws on."""
    if stream is None:
        return False
    if getattr(stream, "rich_proxied_file", None) is not None:
        # Another rich live display already owns this terminal: two would overwrite each other.
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _terminal_allows_animation(environ: Mapping[str, str]) -> bool:
    # rich's own conventions, read here so that deciding "no" never imports rich.
    if environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return False
    return environ.get("TTY_COMPATIBLE") != "0" and environ.get("TTY_INTERACTIVE") != "0"


def progress_wanted(
    enabled: Any, stream: Any, environ: Mapping[str, str] | None = None, where: str | None = None
) -> bool:
    """Whether to show the display on ``stream`` (standard error) given ``progress.enabled``.

    ``True`` shows it whatever the stream is (on a file or a pipe, rich writes the last frame
    once, when the flow run finishes); ``False`` never; ``"auto"`` when ``stream`` is a
    terminal and the environment does not say it cannot animate (``TERM=dumb``,
    ``TTY_COMPATIBLE=0``, ``TTY_INTERACTIVE=0``). Raises ValueError for any other value.
    """
    forced = parse_enabled(enabled, where)
    if forced is not None:
        return forced
    environ = os.environ if environ is None else environ
    return stream_is_terminal(stream) and _terminal_allows_animation(environ)
