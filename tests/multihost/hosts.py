"""Test "hosts" made of Linux namespaces: each its own network stack, hostname and folder.

A `Network` is a bridge in a namespace of its own (the switch) and one network namespace per
`Host`, joined to the bridge by a veth pair, with an address in ``10.231.N.0/24`` that exists
only inside these namespaces: nothing is added to the machine's own network. Every process a
host starts runs in its network namespace, in a UTS namespace (its own hostname, so logs and
history say which host ran what) and in a mount namespace where the other hosts' folders are
hidden under empty tmpfs mounts, with its own working directory, ``HOME`` and ``TMPDIR`` and
no ``PYTHONPATH``: a host sees the installed packages and its own folder, not the flow's.
The hosts share one folder, ``shared``, as a cluster shares a network filesystem.

Ports inside the namespaces are fixed (8786, 6379...): they are private to the namespace, so
they cannot collide with other test sessions on the machine.

Namespaces carry this process's id in their names; `clean_leftovers` deletes those of
processes that no longer run (a session killed before its teardown).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREFIX = "tlmh"
#: Variables a host does not inherit from the test process.
_DROPPED = ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV_PROMPT")
_HOST_SCRIPT = (
    'hostname "$0" && for d in $TLMH_HIDE; do mount -t tmpfs -o size=1m tlmh-hidden "$d"; done'
    ' && cd "$TLMH_WORKDIR" && exec "$@"'
)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "multi-host tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "multi-host tests need root to create network namespaces (ip netns add)"
    missing = [tool for tool in ("ip", "unshare", "hostname", "mount") if shutil.which(tool) is None]
    if missing:
        return f"multi-host tests need {', '.join(missing)} (apt-get install iproute2 util-linux)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed here: {made.stderr.strip()}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(netns: str) -> None:
    """SIGKILL every process left in ``netns`` (all of them were started by a host of ours)."""
    listed = _ip("netns", "pids", netns, check=False).stdout.split()
    for pid in listed:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def clean_leftovers() -> None:
    """Delete the namespaces of earlier sessions whose process is gone."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner)):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)


class Host:
    """One namespaced host: its address, hostname and folder, and the processes it started."""

    def __init__(self, network: Network, name: str, index: int) -> None:
        self.network = network
        self.name = name
        self.hostname = f"host-{name}"
        self.netns = f"{network.tag}-{name}"
        self.address = f"{network.prefix}.{index}"
        self.root = network.base / name
        self.workdir = self.root / "work"
        self.home = self.root / "home"
        self.processes: list[subprocess.Popen[bytes]] = []
        for folder in (self.workdir, self.home, self.root / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.netns)
        sw, port = network.switch, f"p-{name}"
        _ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _ip("-n", sw, "link", "set", port, "master", "br0", "up")
        _ip("-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _ip("-n", self.netns, "link", "set", "eth0", "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")

    def __repr__(self) -> str:
        return f"Host({self.hostname}, {self.address})"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if k not in _DROPPED and not k.startswith(("TASKLOOM_", "DASK_", "RAY_", "PYTEST_"))
        }
        others = [str(p) for p in self.network.base.iterdir() if p.is_dir() and p not in (self.root, self.network.shared)]
        env.update(
            HOME=str(self.home),
            TMPDIR=str(self.root / "tmp"),
            TLMH_WORKDIR=str(self.workdir),
            TLMH_HIDE=" ".join(others),
        )
        env.update(extra or {})
        return env

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run on this host: its network, its hostname, the others' folders hidden."""
        return [
            "ip", "netns", "exec", self.netns, "unshare", "--uts", "--mount", "--",
            "sh", "-c", _HOST_SCRIPT, self.hostname, *args,
        ]  # fmt: skip

    def start(self, args: Sequence[str], log: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process here, in its own process group, output to ``log``."""
        with (self.root / log).open("ab") as out:
            process = subprocess.Popen(
                self.command(args), env=self.env(env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(
        self, args: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command here to its end (``TimeoutExpired`` after ``timeout``), output captured."""
        return subprocess.run(
            self.command(args), env=self.env(env), capture_output=True, text=True, timeout=timeout
        )

    def link(self, up: bool) -> None:
        """Plug this host's cable in or pull it out (its end of the veth at the switch)."""
        _ip("-n", self.network.switch, "link", "set", f"p-{self.name}", "up" if up else "down")

    def stop(self, grace: float = 10.0) -> None:
        """TERM each process group, KILL what is left after ``grace``, then sweep the namespace."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)
        self.processes.clear()
        _kill_namespace_processes(self.netns)  # anything that left its group (daemons)

    def remove(self) -> None:
        self.stop(grace=5.0)
        _ip("netns", "del", self.netns, check=False)
        self.network.hosts.pop(self.name, None)


class Network:
    """A switch and the hosts plugged into it; `close` removes all of it."""

    def __init__(self) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.prefix = f"10.231.{os.getpid() % 250 + 1}"
        # Short: Ray's Unix sockets live under a host's folder, and their paths are limited.
        self.base = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp"))
        self.shared = self.base / "shared"
        self.shared.mkdir()
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._next = 1
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def add(self, name: str) -> Host:
        host = Host(self, name, self._next)
        self._next += 1
        self.hosts[name] = host
        return host

    def close(self) -> None:
        for host in list(self.hosts.values()):
            try:
                host.remove()
            except Exception:  # keep going: every namespace must go
                pass
        _ip("netns", "del", self.switch, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def python(*args: str) -> list[str]:
    """This interpreter (the test environment's packages) running ``args``."""
    return [sys.executable, *args]


def wait_until(predicate: Any, what: str, timeout: float, processes: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: a process exited with code {dead[0].returncode}.")
        time.sleep(0.25)
    raise RuntimeError(f"{what}: not ready within {timeout:g} s.")


def run_and_pull_link(
    host: Host, args: Sequence[str], env: Mapping[str, str], started: Any, lost: Host
) -> str:
    """Run ``args`` on ``host``; once ``started(output)`` says a run is under way on ``lost``,
    take ``lost``'s link down for good. The output once the program ends; a program still
    running 240 s later (a hang) fails the test, and is killed."""
    log = host.root / "link_flow.log"
    with log.open("wb") as out:
        program = subprocess.Popen(
            host.command(args), env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while not started(log.read_text()) and time.monotonic() < deadline:
            assert program.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        lost.link(up=False)
        program.wait(timeout=240)  # a hang fails here
    finally:
        if program.poll() is None:
            os.killpg(program.pid, signal.SIGKILL)
    output = log.read_text()
    assert "FLOW ENDED" in output, output[-4000:]
    return output
