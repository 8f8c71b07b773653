"""Starting a private Ray, or connecting to a running one, and undoing only that.

Three traps of recent Ray versions are handled here, so that a local flow keeps all of its
traffic on 127.0.0.1:

* Ray turns ``127.0.0.1`` (given as the node address, or as the host of the address to
  connect to) into the machine's "reachable" address, and then listens or dials there.
  Ray only keeps loopback when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (a single-machine
  mode), so that mode is switched on around ``ray.init`` for a private instance and for a
  loopback address, and switched back after (the driver keeps the address it got).
* ``ray.init()`` without an address attaches to the last ``ray start`` cluster: a private
  instance is asked for with ``address="local"``.
* A new local instance turns token authentication on for this process
  (``RAY_AUTH_MODE=token`` in ``os.environ``); the variable is put back when it shuts down.

Importing this module does not import ray: ``import ray`` takes seconds and happens in
`open_session`, when a flow run enters the runner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import attrs

__all__ = ["RayConnectionError", "RayNotInstalledError", "RaySession", "import_ray", "open_session"]

logger = logging.getLogger("taskloom.task_runner.ray")

_SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_AUTH_MODE = "RAY_AUTH_MODE"
_GCS_PORT = 6379
_CLIENT_PORT = 10001
_LOOPBACK_NAMES = frozenset({"localhost", "::1", "[::1]"})


class RayNotInstalledError(ImportError):
    """ray is not importable here; the message says how to install it."""


class RayConnectionError(ConnectionError):
    """The Ray instance at an address cannot be reached or used; the message says what to do."""


def import_ray() -> ModuleType:
    """``import ray``, or one sentence saying how to install it instead of a traceback."""
    try:
        import ray
    except ImportError as exc:
        raise RayNotInstalledError(
            f"The 'ray' runner needs the ray package, which cannot be imported here ({exc}): "
            "install it with pip install 'taskloom[ray]'."
        ) from None
    return ray


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.startswith("127.")


def split_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``ray://host:port``, ``host:port`` or ``host``."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    default = _CLIENT_PORT if scheme == "ray" else _GCS_PORT
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [::1]:6379
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    try:
        return scheme, host, int(port) if port else default
    except ValueError:
        raise RayConnectionError(
            f"{address!r} is not a Ray address: give host:port (the head's GCS port, 6379 by "
            "default), ray://host:port (Ray Client, 10001 by default) or 'auto'."
        ) from None


def _resolve_auto(ray: ModuleType) -> str:
    """The concrete address ``auto`` stands for: RAY_ADDRESS, or the last ``ray start`` head."""
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise RayConnectionError(
            "No running Ray instance was found for address 'auto' (RAY_ADDRESS is not set and "
            "no head was started with 'ray start' on this machine): start one with "
            "'ray start --head' or give the runner its address."
        )
    return str(found)


def _check_answers(address: str, host: str, port: int, timeout: float) -> None:
    """Fail within ``timeout`` seconds when nothing listens at the address (Ray would retry)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), port), timeout=max(0.1, timeout)).close()
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, ConnectionRefusedError) or time.monotonic() >= deadline:
                raise RayConnectionError(
                    f"No Ray instance answered at {address} within {timeout:g} s ({reason}): "
                    "start one there with 'ray start --head', or fix the runner's address."
                ) from None
            time.sleep(0.2)


@contextmanager
def _single_machine(enabled: bool) -> Iterator[None]:
    """Keep Ray on loopback while it starts or connects (see the module docstring).

    Where the user set ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` themselves, their value holds,
    for this process too: Ray reads the variable once, when ray is imported, so a process
    that imported ray before setting it would otherwise dial the machine's other address
    for a head on 127.0.0.1 and wait for it in vain.
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    chosen = os.environ.get(_SINGLE_MACHINE)
    before = ray_constants.ENABLE_RAY_CLUSTER
    if chosen is None:
        os.environ[_SINGLE_MACHINE] = "0"  # for the processes Ray starts now
        ray_constants.ENABLE_RAY_CLUSTER = False  # for this process, read at each call
    else:
        ray_constants.ENABLE_RAY_CLUSTER = chosen.lower() in ("true", "1")  # as Ray parses it
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if chosen is None:
            os.environ.pop(_SINGLE_MACHINE, None)


def _current_address(ray: ModuleType) -> str:
    """Where this process's Ray connection goes (``ray://...`` for a Ray Client connection)."""
    try:
        from ray.util.client import ray as client

        if client.is_connected():  # type: ignore[no-untyped-call]
            return "ray://" + str(getattr(client, "_addr", "?") or "?")
    except Exception:
        pass
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:
        return "?"


def _same_place(wanted: str, current: str) -> bool:
    try:
        w_scheme, w_host, w_port = split_address(wanted)
        c_scheme, c_host, c_port = split_address(current)
    except RayConnectionError:
        return False
    if w_scheme != c_scheme or w_port != c_port:
        return False
    return w_host == c_host or (is_loopback(w_host) and is_loopback(c_host))


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@attrs.define
class RaySession:
    """What one `RayTaskRunner.__enter__` did, so that `close` undoes exactly that."""

    ray: ModuleType
    address: str
    owned: bool  # this session called ray.init, so it calls ray.shutdown
    auth_mode_before: str | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _closed: bool = attrs.field(default=False, init=False)  # ray.shutdown called (or running)

    def close(self) -> None:
        """Shut down what this session started; a connection it found stays open."""
        self._shutdown(only_owned=True)

    def disconnect(self) -> None:
        """Close the connection whoever opened it: its head is lost (see `_watch`)."""
        self._shutdown(only_owned=False)

    def _shutdown(self, only_owned: bool) -> None:
        """``ray.shutdown()``, once per session. The lock is not held while it runs: when it
        is stuck on a lost head, `close` returns at once instead of waiting on it."""
        with self._lock:
            if self._closed or (only_owned and not self.owned):
                return
            self._closed = True
            owned, self.owned = self.owned, False
        try:
            self.ray.shutdown()
        finally:
            if owned:
                _restore(_AUTH_MODE, self.auth_mode_before)


def open_session(
    address: str | None, init_kwargs: Mapping[str, Any], connect_timeout: float
) -> RaySession:
    """Start a private local Ray (no address) or connect to the one at ``address``.

    A process can hold one Ray connection: when it already has one (the user called
    ``ray.init``, or a test session connected), it is used and left open, provided it goes
    where ``address`` asks.
    """
    ray = import_ray()
    if address is not None and address != "auto":
        _scheme, host, port = split_address(address)
        _check_answers(address, host, port, connect_timeout)
    if ray.is_initialized():
        current = _current_address(ray)
        if address not in (None, "auto") and not _same_place(address, current):
            raise RayConnectionError(
                f"This process is already connected to the Ray instance at {current} and Ray "
                f"allows one connection per process: use address={current!r}, or call "
                f"ray.shutdown() before running a flow on {address}."
            )
        logger.info("Using the Ray instance this process is already connected to at %s", current)
        return RaySession(ray, current, owned=False)

    auth_before = os.environ.get(_AUTH_MODE)
    kwargs = dict(init_kwargs)
    if address is None:
        logger.info("Creating a local Ray instance")
        kwargs.setdefault("include_dashboard", False)
        kwargs.setdefault("_node_ip_address", "127.0.0.1")
        loopback = is_loopback(str(kwargs["_node_ip_address"]))
        try:
            with _single_machine(loopback):
                ray.init(address="local", **kwargs)
        except BaseException:
            _restore(_AUTH_MODE, auth_before)
            raise
        return RaySession(ray, _current_address(ray), owned=True, auth_mode_before=auth_before)

    logger.info("Connecting to an existing Ray instance at %s", address)
    target = address
    if address == "auto":
        target = _resolve_auto(ray)
        _scheme, host, port = split_address(target)
        _check_answers(f"auto ({target})", host, port, connect_timeout)
    try:
        with _single_machine(is_loopback(host)):
            ray.init(address=target, **kwargs)
    except Exception as exc:
        _restore(_AUTH_MODE, auth_before)
        text = str(exc).strip()
        raise RayConnectionError(
            f"Could not connect to the Ray instance at {address} "
            f"({type(exc).__name__}: {text.splitlines()[0] if text else '-'}): if that cluster "
            "uses token authentication, give this process its token (RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN, or ~/.ray/auth_token)."
        ) from exc
    return RaySession(ray, target, owned=True, auth_mode_before=auth_before)
