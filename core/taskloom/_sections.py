"""Options of one plugin's runner, log sink or result storage, from its own settings section.

``[sinks.csv]`` goes to the ``csv`` sink's factory and to nothing else, as ``[runners.dask]``
goes to the ``dask`` runner. Options are checked against the factory's parameters and, when
they came from the environment or the command line as text, converted by its type hints.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from .config import SECTION_LABELS, ConfigError, Settings, coerce

__all__ = ["accepts", "build", "option_types", "plain_type", "section_label", "section_options"]


def section_label(table: str) -> str:
    """What one entry of ``table`` is called in messages: runner, log sink, result storage."""
    return SECTION_LABELS[table]


def accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes a keyword ``name`` (by that name or through ``**kwargs``)."""
    types, open_ended = option_types(factory)
    return open_ended or name in types


def section_options(
    table: str, name: str, factory: Callable[..., Any], settings: Settings
) -> dict[str, Any]:
    """The options of ``[TABLE.NAME]`` for ``factory``, checked and typed.

    An option the factory does not take raises `ConfigError` naming the ones it does.
    """
    types, open_ended = option_types(factory)
    label = section_label(table)
    options = {}
    for option, (value, source) in settings.section(table, name).items():
        if option not in types and not open_ended:
            known = ", ".join(sorted(types)) or "none"
            raise ConfigError(
                f"{label.capitalize()} {name!r} has no option {option!r} (set in {source}). "
                f"Its options: {known}."
            )
        if isinstance(value, str) and (source == "cli" or source.startswith("env ")):
            value = coerce(value, types.get(option), f"Option {option!r} of {label} {name!r} ({source})")
        options[option] = value
    return options


def option_types(factory: Callable[..., Any]) -> tuple[dict[str, type | None], bool]:
    """The keyword options ``factory`` takes, with a plain type for each where its hint has one,
    and whether it takes any other (``**kwargs``)."""
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}, True
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    types: dict[str, type | None] = {}
    open_ended = False
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
            continue
        types[name] = plain_type(hints.get(name))
    return types, open_ended


def plain_type(hint: Any) -> type | None:
    """The type `coerce` converts text to for ``hint``: int, float, bool, str, list or dict
    (``list[int]`` is a list), or that of ``X`` in ``X | None``; None for any other hint."""
    if hint in (int, float, bool, str, dict, list):
        return hint  # type: ignore[no-any-return]
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        return origin  # type: ignore[no-any-return]
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return plain_type(args[0])
    return None


def build(table: str, name: str, factory: Callable[..., Any], options: dict[str, Any], sources: str) -> Any:
    """``factory(**options)``; a factory that refuses them raises one `ConfigError` sentence.

    ``sources`` says where the options came from (``"path from env TASKLOOM_..."``).
    """
    try:
        return factory(**options)
    except Exception as exc:
        label = section_label(table)
        raise ConfigError(
            f"{label.capitalize()} {name!r} refused its options ({sources or 'none given'}): "
            f"{type(exc).__name__}: {exc}"
        ) from None
