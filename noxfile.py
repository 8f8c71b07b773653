"""Every check a developer or CI runs, one session each: `nox -l` lists them.

`nox -s tests` is the whole suite (Dask and Ray included) and is what CI runs;
`nox -s quick` skips the slow, Dask and Ray tests for everyday use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["quick"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
CORE = ["./core", "./plugins/local", "./plugins/loguru", "./plugins/history"]
CLUSTER_PLUGINS = [p for p in ("./plugins/dask", "./plugins/ray") if (ROOT / p / "pyproject.toml").exists()]
EXTRA_PLUGINS = ["./plugins/fsspec", "./plugins/otel", "./plugins/rich"]
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3"]


def _install_project(session: nox.Session, *plugins: str, editable: bool = True) -> None:
    # The umbrella too: the core reads its extras for "pip install 'taskloom[ray]'" hints.
    folders = [*CORE, *plugins, "."]
    args: list[str] = []
    for folder in folders:
        args += ["-e", folder] if editable else [folder]
    session.install(*args)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, with the Dask and Ray runners on real clusters."""
    _install_project(session, *CLUSTER_PLUGINS, *EXTRA_PLUGINS)
    session.install(*TEST_DEPS, "moto[server]>=5", "s3fs", "playwright>=1.40", "opentelemetry-sdk>=1.20")
    _ensure_chromium(session)
    _ensure_iproute2(session)
    for extra in sorted((ROOT / "docs" / "examples").glob("plugin-*/pyproject.toml")):
        session.install(str(extra.parent))
    session.run("pytest", *session.posargs)


def _ensure_chromium(session: nox.Session) -> None:
    """The report's browser test drives Debian's Chromium (Playwright's own download needs
    a network this project does not assume); install it where we may."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            session.run("apt-get", "update", "-qq", external=True)
            session.run(
                "apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                external=True, env={"DEBIAN_FRONTEND": "noninteractive"},
            )
            return
        except nox.command.CommandFailed:
            pass  # the test says what is missing
    session.warn("Chromium is not installed: the report's browser test will be skipped (failed with CI set).")


def _ensure_iproute2(session: nox.Session) -> None:
    """The multi-host tests build hosts from network namespaces with `ip` (iproute2), as root;
    install it where we may, else they are skipped (failed with CI set)."""
    if shutil.which("ip") or not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return
    try:
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get", "install", "-y", "-qq", "--no-install-recommends", "iproute2",
            external=True, env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    except nox.command.CommandFailed:
        session.warn("iproute2 could not be installed: the multi-host tests will be skipped.")


@nox.session
def quick(session: nox.Session) -> None:
    """The fast part of the suite: no clusters, no sleeping examples."""
    _install_project(session, "./plugins/otel", "./plugins/rich")
    session.install(*TEST_DEPS, "opentelemetry-sdk>=1.20")
    session.run("pytest", "-m", "not slow and not dask and not ray and not multihost", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, over everything."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and the first-party plugins (the typed public API)."""
    _install_project(session, *CLUSTER_PLUGINS, *EXTRA_PLUGINS)
    session.install("mypy>=1.10", "pytest>=8")
    session.run("mypy", *session.posargs)
    session.run("mypy", "docs/examples/typed_api.py")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly: a broken link fails."""
    _install_project(session, *CLUSTER_PLUGINS)
    session.install("mkdocs-material>=9.5", "mkdocstrings[python]>=0.25")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session
def bench(session: nox.Session) -> None:
    """Per-task overhead beside the raw engines; writes docs/performance.md."""
    _install_project(session, *CLUSTER_PLUGINS)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def example(session: nox.Session) -> None:
    """The seed example, installed as a user would install it."""
    _install_project(session, editable=False)
    session.run("python", "docs/examples/seed_concurrent.py")
