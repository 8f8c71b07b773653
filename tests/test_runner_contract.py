"""The public runner contract, as a third party's runner uses it.

`WireRunner` is the kind of runner the plugin guide describes: it subclasses
`taskloom.runners.TaskRunner`, declares no capabilities, and sends every call and outcome
through the public wire helpers as bytes, as a runner whose workers sit in other processes
must. It runs on a thread pool, so the suite stays fast, but nothing it hands over is an
object of the flow's process. It passes the whole conformance kit.
"""

from __future__ import annotations

import ast
import os
import pickle
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskloom import flow, get_flow_run, task
from taskloom.context import FlowRun, TaskRun
from taskloom.runners import (
    CallEncoder,
    TaskRunCall,
    TaskRunner,
    TaskRunOutcome,
    decode_call,
    dumps,
    encode_outcome,
    encode_outcome_parts,
    loads,
    loads_parts,
    run_task_call,
    upstream_handles,
)
from taskloom.states import Completed
from taskloom.testing import RunnerConformance

ROOT = Path(__file__).resolve().parents[1]


def _work(call_bytes: bytes, upstream_bytes: bytes) -> bytes:
    """What a worker does: bytes in, bytes out."""
    call = decode_call(call_bytes)
    return encode_outcome(call, run_task_call(call, *loads(upstream_bytes)))


class WireRunner(TaskRunner):
    name = "wire"
    concurrency = "parallel"

    def __enter__(self) -> WireRunner:
        self._pool = ThreadPoolExecutor(4)
        self._encoder = CallEncoder("the wire workers")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=exc_info[0] is None, cancel_futures=True)

    def submit(self, call: TaskRunCall) -> Future[Any]:
        blob = self._encoder.encode(call)
        states = upstream_handles(call, lambda native: False)  # waits for them here
        return self._pool.submit(_work, blob, dumps(states))  # the core loads the outcome


class TestWireRunner(RunnerConformance):
    runner = WireRunner


@task
def give_lock() -> Any:
    return threading.Lock()


@task
def takes(value: Any) -> str:
    return type(value).__name__


def test_a_result_that_cannot_travel_fails_its_run_in_one_sentence() -> None:
    seen = {}

    @flow(task_runner=WireRunner())
    def locks() -> None:
        lock, other = give_lock.submit(), takes.submit("still works")
        lock.wait()
        seen["lock"], seen["other"] = lock.state, other.result()

    assert locks(return_state=True).is_failed()
    lock_state = seen["lock"]
    assert lock_state.is_failed()
    assert lock_state.message.startswith(
        "Task 'give_lock' returned a _thread.lock, which could not be sent back from the worker"
    )
    assert seen["other"] == "str"


def test_an_argument_that_cannot_travel_names_the_task_and_the_value() -> None:
    seen = {}

    @flow(task_runner=WireRunner())
    def sends() -> None:
        future = takes.submit({"inner": [threading.Lock()]})
        future.wait()
        seen["state"] = future.state

    sends(return_state=True)
    state = seen["state"]
    assert state.is_failed()
    assert (
        "Task 'takes' cannot be sent to the wire workers because its argument 'value' holds a "
        "_thread.lock, which cannot be pickled" in state.message
    )


def test_script_code_travels_by_value() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "from taskloom import task\n"
        "def helper(x):\n    return x * 3\n"
        "@task\ndef tripled(x):\n    return helper(x)\n",
        namespace,
    )
    encoder = CallEncoder()

    @flow(task_runner=WireRunner())
    def uses_script() -> int:
        return namespace["tripled"](5) + namespace["tripled"].submit(1).result()  # type: ignore[no-any-return]

    assert uses_script() == 18
    assert b"__main__" in dumps(namespace["helper"])  # by value: a worker has no such module
    del encoder


def test_large_values_are_pieces_of_their_own_and_buffers_travel() -> None:
    # A value that hands pickle its buffer (a NumPy array does) is written as that buffer.
    value = {"blob": b"x" * 200_000, "buffer": pickle.PickleBuffer(b"y" * 100_000), "n": 1}
    assert loads(dumps(value)) == {**value, "buffer": b"y" * 100_000}
    run_id, flow_run_id = uuid.uuid4(), uuid.uuid4()
    task_run = TaskRun(run_id, "t-0", "t", "t", flow_run_id, "f")
    call = TaskRunCall(task_run, FlowRun(flow_run_id, "f", "f"), task(len), {})
    outcome = TaskRunOutcome(Completed(data=value["blob"]), ())
    parts = encode_outcome_parts(call, outcome)
    assert any(part is value["blob"] for part in parts), "not copied into a joined stream"
    assert b"".join(parts) == encode_outcome(call, outcome)


def test_an_outcome_loads_back_from_its_pieces_as_a_store_holds_them() -> None:
    value = {"blob": b"x" * 200_000, "array": bytearray(b"z" * 150_000), "n": 1}
    run_id, flow_run_id = uuid.uuid4(), uuid.uuid4()
    task_run = TaskRun(run_id, "t-0", "t", "t", flow_run_id, "f")
    call = TaskRunCall(task_run, FlowRun(flow_run_id, "f", "f"), task(len), {})
    outcome = TaskRunOutcome(Completed(data=value), ())
    parts = encode_outcome_parts(call, outcome)
    assert len(parts) > 2, "the large values were not pieces of their own"
    # As a store hands them back: views and buffers, small neighbours joined, order kept.
    held = [memoryview(parts[0] + parts[1]), *(pickle.PickleBuffer(p) for p in parts[2:])]
    for pieces in (parts, held, [encode_outcome(call, outcome)]):
        loaded = loads_parts(pieces)
        assert isinstance(loaded, TaskRunOutcome) and loaded.state.result() == value


def test_the_flow_run_travels_with_the_call() -> None:
    @task
    def where() -> str:
        flow_run = get_flow_run()
        assert flow_run is not None
        return flow_run.flow_name

    @flow(task_runner=WireRunner())
    def named_flow() -> str:
        return where.submit().result()  # type: ignore[no-any-return]

    assert named_flow() == "named-flow"


class OptionsRunner(TaskRunner):
    def __init__(self, workers: int = 2, tags: dict[str, str] | None = None, *, label: str = "x") -> None:
        self.workers, self.tags, self.label = workers, dict(tags or {}), label
        self.started: list[str] = []  # what a started runner holds: not for its duplicates


def test_the_base_runner_duplicates_and_shows_its_settings_from_its_constructor() -> None:
    runner = OptionsRunner(4, {"a": "b"}, label="y")
    runner.started.append("pool")
    twin = runner.duplicate()
    assert type(twin) is OptionsRunner and twin == runner and twin.started == []
    assert twin.tags == {"a": "b"} and twin.tags is not runner.tags  # built again, not copied
    assert repr(runner) == "OptionsRunner(workers=4, tags={'a': 'b'}, label='y')"
    assert repr(OptionsRunner()) == "OptionsRunner()"  # defaults, and {} for a None default
    assert runner != OptionsRunner(4, {"a": "b"})


def test_a_runner_whose_settings_cannot_be_read_back_is_copied() -> None:
    class Kept(TaskRunner):
        def __init__(self, size: int = 1, **pool_options: Any) -> None:
            self._size, self.pool_options = size, pool_options

    runner = Kept(3, spawn=True)
    twin = runner.duplicate()
    assert twin is not runner and (twin._size, twin.pool_options) == (3, {"spawn": True})
    assert repr(runner) == "Kept()"  # only settings it can read back



def test_a_runner_that_does_not_rebuild_to_the_same_settings_is_copied() -> None:
    import datetime

    class Transforms(TaskRunner):
        def __init__(self, timeout: float = 1.0, tags: list[str] | None = None) -> None:
            self.timeout = datetime.timedelta(seconds=timeout)  # not what __init__ takes
            self.tags = [*(tags or []), "auto"]  # grows each time it is built

    class Named(TaskRunner):
        def __init__(self, name: str = "label") -> None:
            self._label = name  # `name` is the contract's registered name, not this setting

    for runner in (Transforms(2.0, ["a"]), Named("mine")):
        twin = runner.duplicate()
        assert type(twin) is type(runner) and twin is not runner and vars(twin) == vars(runner)
    assert Named("mine").duplicate()._label == "mine"


def _core_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taskloom"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("taskloom."))
    return names


@pytest.mark.parametrize("plugin", ["local", "dask", "ray"])
def test_built_in_runners_use_only_public_names_of_the_core(plugin: str) -> None:
    used = set()
    for path in (ROOT / "plugins" / plugin).glob("taskloom_*/**/*.py"):
        used |= _core_imports(path)
    private = sorted(n for n in used if any(part.startswith("_") for part in n.split(".")[1:]))
    assert used, f"no core imports found in plugins/{plugin}"
    assert private == [], f"plugins/{plugin} imports private core names: {private}"
    outside = sorted(
        # The contract, the values it carries, and (for the local plugin's file storage) results.
        n for n in used if n.rsplit(".", 1)[0] not in {"taskloom", "taskloom.runners", "taskloom.states", "taskloom.context", "taskloom.results"}
    )
    assert outside == [], f"plugins/{plugin} imports core modules beside the runner contract: {outside}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_ids_and_names() -> None:
    from taskloom._names import new_id as _new_id
    from taskloom._names import run_name

    _new_id(), run_name()  # both generators have run in the parent before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id and name to the parent, nothing else
        try:
            os.write(write, f"{_new_id()} {run_name()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id, child_name = os.read(read, 1000).decode().split()
    os.close(read)
    assert child_id != str(_new_id())
    assert child_name != run_name()


def test_run_ids_are_random_version_4_uuids_that_survive_pickling() -> None:
    import pickle
    import uuid

    from taskloom import flow, get_task_run, task

    @task
    def own_id() -> uuid.UUID:
        run = get_task_run()
        assert run is not None
        return run.id

    @flow
    def ids() -> list[uuid.UUID]:
        return [own_id.submit().result() for _ in range(50)]

    made = ids()
    assert len(set(made)) == 50
    for run_id in made:
        assert (run_id.version, run_id.variant) == (4, uuid.RFC_4122)
        assert uuid.UUID(str(run_id)) == run_id == pickle.loads(pickle.dumps(run_id))
        assert run_id == uuid.UUID(int=run_id.int, version=4)  # its bits already say version 4


def test_a_flow_module_imported_after_an_earlier_flow_run_still_travels_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modules are looked at once per set of flow folders (a scan of sys.modules at every
    flow run cost tens of milliseconds); one imported later is still looked at."""
    from taskloom import _flow_modules

    (tmp_path / "early_helpers.py").write_text("X = 1\n")
    (tmp_path / "late_helpers.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_flow_modules, "project_folders", {tmp_path.resolve()})
    import early_helpers  # noqa: F401

    assert "early_helpers" in _flow_modules.ship_flow_modules()
    assert _flow_modules.ship_flow_modules() == []  # nothing new: nothing looked at again
    import late_helpers  # noqa: F401

    assert _flow_modules.ship_flow_modules() == ["late_helpers"]
    assert {b"early_helpers", b"late_helpers"} <= _flow_modules.BY_VALUE
