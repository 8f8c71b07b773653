"""Flows and tasks as a user runs them: final states, results, errors, bad input."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from taskloom import Flow, Task, flow, get_flow_run, get_run_logger, get_task_run, task
from taskloom.logging import MissingContextError
from taskloom.states import StateType


@task
def double(x: int) -> int:
    return 2 * x


@task
def explode(message: str) -> None:
    raise RuntimeError(message)


def test_flow_returns_value_and_name_from_function() -> None:
    @flow
    def my_flow_name(x: int) -> int:
        return double(x) + double.submit(x).result()

    assert isinstance(my_flow_name, Flow)
    assert my_flow_name.name == "my-flow-name"
    assert my_flow_name(3) == 12
    state = my_flow_name(3, return_state=True)
    assert state.is_completed() and state.result() == 12


def test_exception_in_flow_body_fails_it_with_the_exception() -> None:
    @flow
    def broken() -> None:
        raise KeyError("missing")

    state = broken(return_state=True)
    assert state.is_failed()
    assert state.message == "Flow run encountered an exception. KeyError: 'missing'"
    with pytest.raises(KeyError):
        broken()


def test_flow_returning_none_fails_if_a_task_run_failed() -> None:
    @flow(task_runner="sequential")
    def partly() -> None:
        double.submit(1)
        explode.submit("task went wrong")

    state = partly(return_state=True)
    assert state.type is StateType.FAILED
    assert state.message.splitlines()[0] == "1/2 states failed."
    assert "task went wrong" in state.message
    assert "raise RuntimeError(message)" in state.message, "the task's traceback is in the message"
    with pytest.raises(RuntimeError, match="task went wrong"):
        partly()


def test_returned_futures_decide_the_final_state() -> None:
    @flow
    def ignore_failure() -> object:
        explode.submit("ignored")
        return double.submit(2)

    state = ignore_failure(return_state=True)
    assert state.is_completed(), "a returned completed future completes the flow"
    returned = state.result()
    assert returned.is_completed() and returned.result() == 4, "the caller gets the run's final state"

    @flow
    def return_failure() -> object:
        return [double.submit(1), explode.submit("returned")]

    assert return_failure(return_state=True).message.startswith("1/2 states failed.")


def test_plain_return_value_completes_even_after_a_failed_task() -> None:
    @flow
    def plain() -> str:
        explode.submit("not returned")
        return "done"

    state = plain(return_state=True)
    assert state.is_completed() and state.result() == "done"


def test_direct_call_inside_flow_raises_the_task_exception() -> None:
    @flow
    def calls() -> None:
        explode("direct")

    with pytest.raises(RuntimeError, match="direct"):
        calls()


def test_task_return_state_on_call_and_submit() -> None:
    @flow
    def states() -> dict[str, object]:
        # A dict is a plain value: the flow completes and hands the states back as they are.
        return {"failed": explode("x", return_state=True), "ok": double.submit(4, return_state=True)}

    result = states()
    failed, completed = result["failed"], result["ok"]
    assert failed.is_failed() and isinstance(failed.exception, RuntimeError)
    assert completed.is_completed() and completed.result() == 8


def test_task_outside_flow_is_a_plain_call_and_submit_is_an_error() -> None:
    assert double(5) == 10
    with pytest.raises(RuntimeError, match=r"Task 'double' was submitted outside a flow"):
        double.submit(5)


def test_task_on_non_callable_is_one_clear_error() -> None:
    with pytest.raises(TypeError, match=r"@task expects a function, but got 42 \(int\)"):
        task(42)  # type: ignore[call-overload]


def test_flow_parameters_that_do_not_bind_name_the_flow() -> None:
    @flow
    def takes_x(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"Flow 'takes-x' got parameters that do not fit its signature takes_x\(x\): too many positional arguments"):
        takes_x(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Task 'double' got arguments that do not fit"):

        @flow
        def bad_task_call() -> None:
            double.submit(1, 2)  # type: ignore[call-arg]

        bad_task_call()


def test_task_options_and_with_options() -> None:
    @task(name="renamed", tags=["db"], runner_options={"num_cpus": 1})
    def original() -> int:
        return 1

    assert isinstance(original, Task)
    assert original.name == "renamed" and original.tags == frozenset({"db"})
    other = original.with_options(name="other", tags=["x"])
    assert (other.name, other.tags, other.runner_options) == ("other", frozenset({"x"}), {"num_cpus": 1})
    assert original.name == "renamed"


@pytest.mark.parametrize(("decorator", "cls", "kind"), [(task, Task, "task"), (flow, Flow, "flow")])
def test_options_are_declared_once_and_the_typed_signature_matches_them(decorator: Any, cls: Any, kind: str) -> None:
    """Options live in one attrs class; the decorator's typed overload (for editors) must list
    exactly those options, with the same defaults, and `with_options` takes the same names."""
    import typing

    import attrs

    options = attrs.fields(type(decorator(lambda: 1).options))
    typed = next(o for o in typing.get_overloads(decorator) if "name" in inspect.signature(o).parameters)
    signature = inspect.signature(typed).parameters
    assert [(a.name, a.default) for a in options] == [(p.name, p.default) for p in signature.values()]
    made = decorator(name="n", version="1")(lambda x: x)
    assert isinstance(made, cls) and (made.name, made.version) == ("n", "1")
    changed = made.with_options(version="2")
    assert (changed.name, changed.version, made.version) == ("n", "2", "1")
    with pytest.raises(TypeError, match=rf"got unknown option 'colour' for {kind} 'n'\. Options: name, description, "):
        made.with_options(colour="red")


def test_task_run_names_follow_the_task_key() -> None:
    names: list[str] = []

    @task
    def who() -> str:
        run = get_task_run()
        assert run is not None
        return run.name

    @flow
    def named() -> None:
        names.extend(f.result() for f in [who.submit(), who.submit()])

    named()
    prefix = who.task_key
    assert names == [f"{prefix}-0", f"{prefix}-1"]
    assert len(prefix.split("-")[1]) == 8


def test_run_context_and_run_logger() -> None:
    seen = {}

    @task
    def look() -> None:
        seen["task_flow"] = get_flow_run()
        get_run_logger().info("inside")

    @flow
    def ctx() -> None:
        seen["flow"] = get_flow_run()
        get_run_logger().info("in flow")
        look()

    ctx()
    assert seen["flow"].flow_name == "ctx" and seen["task_flow"].id == seen["flow"].id
    assert get_flow_run() is None and get_task_run() is None
    with pytest.raises(MissingContextError, match="outside a flow run or task run"):
        get_run_logger()


def test_var_positional_and_keyword_parameters_reach_the_function() -> None:
    @task
    def gather(first: int, *rest: int, scale: int = 1, **extra: int) -> tuple[object, ...]:
        return first, rest, scale, extra

    @flow(task_runner="sequential")
    def calls() -> object:
        return gather.submit(1, 2, 3, scale=2, z=9).result()

    assert calls() == (1, (2, 3), 2, {"z": 9})


def test_map_validates_lengths_and_needs_an_iterable() -> None:
    @flow
    def bad_lengths() -> None:
        from taskloom.testing._tasks import add

        add.map([1, 2], [1, 2, 3])

    with pytest.raises(ValueError, match="iterables of different lengths"):
        bad_lengths()

    @flow
    def no_iterable() -> None:
        double.map(3)

    with pytest.raises(TypeError, match="without any iterable argument"):
        no_iterable()


# -- subflows that wait, reserved names (Prefect's TestSubflowWaitForTasks) --------------------


def test_a_subflow_waits_for_its_upstream_and_is_not_ready_if_it_failed() -> None:
    ran: list[int] = []

    @flow
    def child(y: int) -> int:
        ran.append(y)
        return y

    @flow
    def after_failure() -> Any:
        upstream = explode.submit("upstream of a subflow")
        return child(2, wait_for=[upstream], return_state=True)

    state = after_failure(return_state=True)
    subflow_state = state.result(raise_on_failure=False)
    assert subflow_state.is_pending() and subflow_state.name == "NotReady"
    assert "did not reach a 'COMPLETED' state" in (subflow_state.message or "")
    assert ran == [], "a subflow whose upstream failed does not run"

    @flow
    def after_success() -> Any:
        upstream = double.submit(1)
        return child(upstream.result() + 1, wait_for=[upstream, "not a future"])

    assert after_success() == 3 and ran == [3]


def test_wait_for_outside_a_flow_and_reserved_names_are_refused() -> None:
    @flow
    def top(x: int) -> int:
        return x

    with pytest.raises(ValueError, match=r"^Only flows run as subflows can wait for dependencies.$"):
        top(1, wait_for=[])
    for reserved in ("wait_for", "return_state"):
        namespace: dict[str, Any] = {}
        exec(f"def fn(x, {reserved}=None): return x", namespace)
        with pytest.raises(TypeError, match=f"^Flow 'fn': '{reserved}' is a reserved argument name and cannot be used.$"):
            flow(namespace["fn"])
        with pytest.raises(TypeError, match=f"^Task 'fn': '{reserved}' is a reserved argument name and cannot be used.$"):
            task(namespace["fn"])


# -- retry defaults and options, versions -----------------------------------------------------


def test_default_task_retries_and_delay_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: dict[str, int] = {}

    def flaky(name: str) -> str:
        attempts[name] = attempts.get(name, 0) + 1
        if attempts[name] < 3:
            raise RuntimeError(f"{name} attempt {attempts[name]}")
        return name

    defaulted = task(flaky, name="defaulted")
    explicit = task(flaky, name="explicit", retries=0)

    @flow
    def retrying() -> Any:
        return defaulted.submit("defaulted"), explicit.submit("explicit")

    monkeypatch.setenv("TASKLOOM_TASKS_DEFAULT_RETRIES", "2")
    monkeypatch.setenv("TASKLOOM_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "0")
    ok, failed = retrying(return_state=True).result(raise_on_failure=False)
    assert ok.result() == "defaulted" and attempts["defaulted"] == 3, "a task without retries= takes the setting"
    assert failed.is_failed() and attempts["explicit"] == 1, "retries=0 given in code is kept"
    assert defaulted.retries == 0, "the task object itself is unchanged"


def test_retry_options_are_checked_with_prefects_words() -> None:
    def fn() -> None:
        return None

    with pytest.raises(ValueError, match="Can not configure more than 50 retry delays per task"):
        task(fn, retries=51, retry_delay_seconds=[1] * 51)
    with pytest.raises(ValueError, match="`retry_jitter_factor` must be >= 0"):
        task(fn, retry_jitter_factor=-1)
    assert task(fn, retry_delay_seconds=[1] * 50).retry_delay_seconds == [1.0] * 50


def test_flows_and_tasks_take_a_version() -> None:
    def fn() -> int:
        return 1

    assert flow(version="2024.1")(fn).version == "2024.1" and flow(fn).version is None
    versioned = task(version="abc")(fn)
    assert versioned.version == "abc" and versioned.with_options(name="other").version == "abc"
    with pytest.raises(TypeError, match=r"^Task 'fn': version must be a string, got 3 \(int\)\.$"):
        task(fn, version=3)  # type: ignore[arg-type]


def test_flow_parameters_are_coerced_from_python_as_from_the_cli() -> None:
    ran: list[Any] = []

    @flow
    def typed(n: int, ratio: float = 1, verbose: bool = False, label: str | None = None) -> Any:
        ran.append(n)
        return n, ratio, verbose, label

    assert typed("3", ratio=2, verbose="yes", label="7") == (3, 2.0, True, "7")
    state = typed("abc", return_state=True)
    assert state.is_failed() and ran == [3], "the body does not run with a parameter it cannot take"
    assert state.message == (
        "Validation of flow parameters failed with error: Parameter 'n' of flow 'typed' must be int, got 'abc'."
    )
    from taskloom.flows import ParameterTypeError

    with pytest.raises(ParameterTypeError, match=r"^Parameter 'n' of flow 'typed' must be int, got 'abc'.$"):
        typed("abc")
    assert typed.with_options(validate_parameters=False)("abc") == ("abc", 1, False, None)
