"""The fsspec storage on file:// and memory://, and everything that needs no S3 server."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("taskloom_fsspec", reason="needs taskloom-fsspec (pip install -e plugins/fsspec)")
fsspec = pytest.importorskip("fsspec")

from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

from taskloom.results import ResultStorage, get_result_storage  # noqa: E402
from taskloom_fsspec import FsspecStorage, FsspecStorageError  # noqa: E402
from taskloom_fsspec.errors import missing_backend  # noqa: E402


@pytest.fixture(params=["file", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return (tmp_path / "results").as_uri()  # file:///tmp/.../results
    return f"memory://taskloom-tests/{uuid.uuid4().hex}"


def test_round_trip_missing_key_and_exists(url: str) -> None:
    storage = FsspecStorage(url)
    assert isinstance(storage, ResultStorage)
    storage.write("a/b/result", b"payload")
    assert storage.read("a/b/result") == b"payload"
    storage.write("a/b/result", b"second")
    assert storage.read("a/b/result") == b"second"
    assert storage.exists("a/b/result")
    assert not storage.exists("other") and not storage.exists("a/b"), "a prefix is not a value"
    with pytest.raises(KeyError):
        storage.read("other")
    with pytest.raises(KeyError):
        storage.read("a")  # a directory on file://


def test_file_url_writes_a_real_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    storage = FsspecStorage((tmp_path / "r").as_uri())
    storage.write("k/v", b"x" * 100_000)
    assert (tmp_path / "r" / "k" / "v").read_bytes() == b"x" * 100_000
    assert os.listdir(tmp_path / "r" / "k") == ["v"]


def test_selected_by_name_through_the_registry(url: str) -> None:
    storage = get_result_storage("fsspec", path=url)
    assert type(storage) is FsspecStorage
    storage.write("k", b"v")
    assert get_result_storage("fsspec", path=url, storage_options={}).read("k") == b"v"


@pytest.mark.parametrize(
    "key", ["../outside", "a/../../outside", "/etc/passwd", "\\windows", "a\\..\\..\\b", ""]
)
def test_keys_cannot_escape_the_prefix(url: str, key: str) -> None:
    storage = FsspecStorage(url)
    for call in (lambda: storage.write(key, b"x"), lambda: storage.read(key), lambda: storage.exists(key)):
        with pytest.raises(ValueError, match=r"is not a relative path inside the storage '.+': use a key without '\.\.'"):
            call()


def test_keys_cannot_escape_an_s3_prefix_either() -> None:
    # Checked before any request: no server is needed (port 9 is never contacted).
    storage = FsspecStorage("s3://bucket/prefix", {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})
    with pytest.raises(ValueError, match="not a relative path inside the storage 's3://bucket/prefix'"):
        storage.write("../other-prefix/k", b"x")


def test_only_bytes_are_written(url: str) -> None:
    storage = FsspecStorage(url)
    with pytest.raises(TypeError, match=r"needs bytes, got dict: serialize the value first\."):
        storage.write("k", {"a": 1})  # type: ignore[arg-type]
    assert not storage.exists("k")


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_file_write_leaves_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    storage = FsspecStorage((tmp_path / "r").as_uri())
    storage.write("key", b"old")

    def fail(fd: int) -> None:  # the new bytes are in the temporary file; the rename never runs
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)):
        storage.write("key", b"new" * 100_000)
    monkeypatch.undo()
    assert storage.read("key") == b"old"
    assert os.listdir(tmp_path / "r") == ["key"], "the temporary file is removed"


KILLED_WRITER = """
import os, sys, time
from taskloom.results import get_result_storage

storage = get_result_storage("fsspec", path=sys.argv[1])
real_fsync = os.fsync

def stall(fd):
    real_fsync(fd)
    print("temporary file written", flush=True)
    time.sleep(120)  # killed here: after the new bytes are on disk, before the rename

os.fsync = stall
storage.write("key", b"new" * 1_000_000)
"""


def test_a_writer_killed_mid_write_leaves_the_old_value(tmp_path: Path) -> None:
    url = (tmp_path / "r").as_uri()
    storage = FsspecStorage(url)
    storage.write("key", b"old")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "temporary file written"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert storage.read("key") == b"old"
    leftovers = [name for name in os.listdir(tmp_path / "r") if name != "key"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp"), "the kill came mid-write"
    assert FsspecStorage(url).read("key") == b"old"


def test_pickles_as_its_url_and_options(url: str) -> None:
    storage = FsspecStorage(url, {"skip_instance_cache": False})
    storage.write("k", b"v")
    clone = pickle.loads(pickle.dumps(storage))
    assert (clone.path, clone.storage_options) == (storage.path, storage.storage_options)
    assert clone.read("k") == b"v"
    assert repr(clone) == f"FsspecStorage(path={url!r})"


def test_repr_does_not_show_secrets() -> None:
    storage = FsspecStorage("memory://x", {"secret": "hunter2"})
    assert "hunter2" not in repr(storage)


def test_loading_the_plugin_imports_no_fsspec() -> None:
    code = textwrap.dedent(
        """
        import sys
        from taskloom import plugins
        registration = plugins.lookup("result_storage", "fsspec")
        assert registration.distribution == "taskloom-fsspec", registration
        assert registration.factory == "taskloom_fsspec:FsspecStorage", registration
        heavy = sorted({"fsspec", "s3fs", "gcsfs", "botocore", "aiobotocore"} & set(sys.modules))
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_protocol_is_one_sentence() -> None:
    with pytest.raises(ValueError, match=r"The result storage URL 'nosuch://x/y' is not one fsspec can open \(.*\); use a URL such as 's3://bucket/prefix'"):
        FsspecStorage("nosuch://x/y")


def test_a_missing_backend_says_what_to_install() -> None:
    fsspec.register_implementation(
        "tlmissing", "taskloom_no_such_module.FileSystem", clobber=True, errtxt="needs a package"
    )
    with pytest.raises(ImportError, match=r"The result storage URL 'tlmissing://b/p' needs the 'tlmissing' backend: install the package fsspec names for it"):
        FsspecStorage("tlmissing://b/p")
    assert "taskloom-fsspec[gcs]" in str(missing_backend("gs://b/p", "gs", ImportError()))


def test_a_missing_s3fs_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["s3fs"] = None  # as if s3fs were not installed
        from taskloom.results import get_result_storage
        try:
            get_result_storage("fsspec", path="s3://bucket/prefix")
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "The result storage URL 's3://bucket/prefix' needs the 's3' backend: pip install 'taskloom-fsspec[s3]'."


class MovingFileSystem(MemoryFileSystem):
    """A backend of the "anything else" kind: written to a temporary name, then moved."""

    protocol = ("tlmoving",)
    root_marker = "/"
    moves: list[tuple[str, str]] = []

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return "/" + path.removeprefix("tlmoving://").lstrip("/")

    def mv(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        type(self).moves.append((path1, path2))
        super().mv(path1, path2, **kwargs)


class DeniedFileSystem(MemoryFileSystem):
    """A backend that refuses the credentials, as s3fs does for InvalidAccessKeyId."""

    protocol = ("tldenied",)
    root_marker = "/"

    def _denied(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("The AWS Access Key Id you provided does not exist in our records.")

    pipe_file = cat_file = info = mv = _denied  # type: ignore[assignment]


@pytest.fixture
def test_backends() -> Iterator[None]:
    MovingFileSystem.moves.clear()
    fsspec.register_implementation("tlmoving", MovingFileSystem, clobber=True)
    fsspec.register_implementation("tldenied", DeniedFileSystem, clobber=True)
    yield


def test_other_backends_write_a_temporary_name_then_move_it(test_backends: None) -> None:
    storage = FsspecStorage("tlmoving://results")
    storage.write("a/key", b"value")
    assert storage.read("a/key") == b"value"
    [(source, target)] = MovingFileSystem.moves
    assert target == "/results/a/key" and source.startswith("/results/a/.key.") and source.endswith(".tmp")
    assert MovingFileSystem().ls("/results/a", detail=False) == ["/results/a/key"], "no temporary left"


@pytest.mark.parametrize("action", ["write", "read", "exists"])
def test_refused_credentials_are_one_sentence_naming_the_url(test_backends: None, action: str) -> None:
    storage = FsspecStorage("tldenied://bucket/prefix")
    call = {"write": lambda: storage.write("k", b"x"), "read": lambda: storage.read("k"), "exists": lambda: storage.exists("k")}[action]
    verb = "write" if action == "write" else "read"
    with pytest.raises(FsspecStorageError, match=rf"^Could not {verb} 'tldenied://bucket/prefix/k': the credentials were missing or refused \(PermissionError: The AWS Access Key Id .*\); check storage_options"):
        call()


def test_missing_s3_credentials_are_one_sentence_naming_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # botocore gives up before sending anything, so the endpoint (port 9) is never contacted.
    options = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}, "skip_instance_cache": True}
    storage = get_result_storage("fsspec", path="s3://bucket/prefix", storage_options=options)
    with pytest.raises(FsspecStorageError, match=r"^Could not write 's3://bucket/prefix/k': the credentials were missing or refused \(NoCredentialsError: Unable to locate credentials\); check storage_options \(key/secret, token, profile\) or the environment"):
        storage.write("k", b"x")


def test_a_local_permission_error_is_about_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FsspecStorage((tmp_path / "r").as_uri())
    storage.write("k", b"old")

    def denied(*args: Any, **kwargs: Any) -> Any:  # as in a directory this user cannot write
        raise PermissionError(13, "Permission denied", str(tmp_path / "r"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(FsspecStorageError, match=r"^Could not write 'file://.+/r/k': permission denied \(PermissionError: .+\); check that this user may write files in that directory\.$"):
        storage.write("k", b"new")
    monkeypatch.undo()
    assert storage.read("k") == b"old"


def test_an_unreachable_endpoint_is_one_sentence_naming_the_url() -> None:
    pytest.importorskip("s3fs")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {
        "key": "testing", "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    storage = FsspecStorage("s3://bucket/prefix", options)
    with pytest.raises(FsspecStorageError, match=r"^Could not write 's3://bucket/prefix/k': the storage endpoint could not be reached \(EndpointConnectionError: .+\); check client_kwargs=\{'endpoint_url': \.\.\.\} in storage_options and the network\.$"):
        storage.write("k", b"x")
