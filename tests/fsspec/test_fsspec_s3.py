"""The fsspec storage on S3: a real moto server in its own process (see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("taskloom_fsspec", reason="needs taskloom-fsspec (pip install -e plugins/fsspec)")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

from taskloom.results import get_result_storage
from taskloom_fsspec import FsspecStorage, FsspecStorageError

if TYPE_CHECKING:
    from conftest import S3  # the fixture's type; not imported at run time (name clashes)

pytestmark = pytest.mark.slow


def test_round_trip_missing_key_and_exists(s3: S3) -> None:
    storage = FsspecStorage(s3.url(), s3.storage_options)
    storage.write("a/b/result", b"payload")
    assert storage.read("a/b/result") == b"payload"
    storage.write("a/b/result", b"second")
    assert storage.read("a/b/result") == b"second"
    assert storage.exists("a/b/result")
    assert not storage.exists("a/b"), "a prefix is not a value"
    assert not storage.exists("other")
    with pytest.raises(KeyError):
        storage.read("other")


def test_keys_stay_under_the_prefix(s3: S3) -> None:
    import boto3

    prefix = uuid.uuid4().hex
    FsspecStorage(s3.url(prefix), s3.storage_options).write("x/y", b"1")
    client = boto3.client(
        "s3", endpoint_url=s3.endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}/x/y"]
    with pytest.raises(ValueError, match="is not a relative path inside the storage"):
        FsspecStorage(s3.url(prefix), s3.storage_options).write(f"../{prefix}-other/k", b"x")


def test_selected_by_name_through_the_registry(s3: S3) -> None:
    url = s3.url()
    storage = get_result_storage("fsspec", path=url, storage_options=s3.storage_options)
    assert type(storage) is FsspecStorage
    storage.write("k", b"v")
    again = get_result_storage("fsspec", path=url, storage_options=s3.storage_options)
    assert again.exists("k") and again.read("k") == b"v"


def test_a_reader_never_sees_part_of_an_object(s3: S3) -> None:
    storage = FsspecStorage(s3.url(), s3.storage_options)
    values = [bytes([65 + i]) * 1_000_000 for i in range(2)]
    storage.write("key", values[0])
    bad: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = storage.read("key")
            if data not in values:
                bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(6):
        storage.write("key", values[i % 2])
    stop.set()
    thread.join()
    assert bad == []


PROCESS = """
import json, sys
from taskloom.results import get_result_storage

action, url, options, key, value = sys.argv[1:]
storage = get_result_storage("fsspec", path=url, storage_options=json.loads(options))
if action == "write":
    storage.write(key, value.encode())
else:
    print(json.dumps({"exists": storage.exists(key), "value": storage.read(key).decode()}))
"""


def _process(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, *args], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_value_written_by_one_process_is_read_by_another(s3: S3, tmp_path: Path) -> None:
    url, options, value = s3.url(), json.dumps(s3.storage_options), uuid.uuid4().hex
    _process(tmp_path, "write", url, options, "shared/result", value)
    seen = json.loads(_process(tmp_path, "read", url, options, "shared/result", ""))
    assert seen == {"exists": True, "value": value}
    # and the test process, a third one, agrees
    assert FsspecStorage(url, s3.storage_options).read("shared/result") == value.encode()


@pytest.mark.parametrize("action", ["write", "read", "exists"])
def test_a_missing_bucket_is_one_sentence_naming_the_url(s3: S3, action: str) -> None:
    storage = FsspecStorage("s3://no-such-bucket-taskloom/results", s3.storage_options)
    call = {"write": lambda: storage.write("k", b"x"), "read": lambda: storage.read("k"), "exists": lambda: storage.exists("k")}[action]
    verb = "write" if action == "write" else "read"
    expected = (
        f"Could not {verb} 's3://no-such-bucket-taskloom/results/k': its bucket does not exist; "
        "check the bucket name in the URL and the endpoint or region in storage_options, "
        "or create the bucket."
    )
    with pytest.raises(FsspecStorageError) as raised:
        call()
    assert str(raised.value) == expected


def test_the_error_reaches_a_user_as_one_line(s3: S3, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from taskloom.results import get_result_storage
        storage = get_result_storage("fsspec", path="s3://no-such-bucket-taskloom/r",
                                     storage_options=json.loads(sys.argv[1]))
        storage.write("k", b"x")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(s3.storage_options)], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("taskloom_fsspec.errors.FsspecStorageError: Could not write 's3://no-such-bucket-taskloom/r/k': its bucket does not exist")
    assert "During handling of the above exception" not in done.stderr, "no chain of backend frames"


FLOW = """
import sys
from taskloom import flow, task

@task(cache_key_fn=lambda *args, **kwargs: sys.argv[1], persist_result=True)
def expensive(x):
    print("computed", flush=True)
    return {"x": x}

@flow
def shared_cache():
    return expensive(21)

print("result", shared_cache())
"""


def test_a_cached_result_is_shared_by_two_processes_configured_by_environment(s3: S3, tmp_path: Path) -> None:
    # What a cluster worker sees: the storage chosen in config, credentials and endpoint from
    # the environment, no storage_options anywhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TASKLOOM_"))}
    env |= {
        "TASKLOOM_RESULTS_STORAGE": "fsspec",
        "TASKLOOM_RESULTS_PATH": s3.url(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    key = uuid.uuid4().hex
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", FLOW, key], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert "computed" in outputs[0] and "Finished in state Completed()" in outputs[0]
    assert "computed" not in outputs[1] and "Finished in state Cached()" in outputs[1]
    assert all("result {'x': 21}" in out for out in outputs)
