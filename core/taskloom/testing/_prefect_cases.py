"""Conformance cases for what a Prefect user's code expects (version 5), on every runner.

What a flow call gives back, tasks that return states, futures inside containers, mapping, and
waiting: each follows Prefect 2 and 3's public tests, so code written for Prefect behaves the
same whichever runner runs it. `RunnerConformance` includes these.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import taskloom
from taskloom import flow
from taskloom.futures import resolve_futures_to_results, resolve_futures_to_states
from taskloom.states import CancelledRun, FailedRun, State, UpstreamTaskError

from . import _tasks as t

__all__ = ["PrefectBehaviour"]


class PrefectBehaviour:
    """Cases a runner passes when Prefect's rules hold on it; needs the ``taskloom_runner``
    and ``run_logs`` fixtures of `RunnerConformance`."""

    # -- what a flow call gives back ------------------------------------------------------

    def test_returned_futures_come_back_as_final_states_in_the_same_shape(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def shaped() -> Any:
            first = t.add.submit(1, 1)
            return first, [t.add.submit(2, 2), t.fail.submit("in a list")], {"d": t.add.submit(3, 3)}

        state = shaped(return_state=True)
        assert state.is_completed(), "a value that is not a flat collection of states completes the flow"
        first, in_list, in_dict = state.result()
        assert isinstance(first, State) and first.result() == 2
        assert [s.name for s in in_list] == ["Completed", "Failed"] and in_list[0].result() == 4
        assert in_dict["d"].result() == 6

    def test_returned_flat_states_decide_the_flow_and_are_its_data(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def flat() -> Any:
            return t.fail.submit("first"), t.fail.submit("second"), t.add.submit(1, 2)

        state = flat(return_state=True)
        assert state.is_failed() and (state.message or "").startswith("2/3 states failed.")
        a, b, c = state.result(raise_on_failure=False)
        assert a.is_failed() and b.is_failed() and c.is_completed() and c.result() == 3
        with pytest.raises(t.ConformanceError, match="first"):
            a.result()
        with pytest.raises(t.ConformanceError, match="first"):
            flat()

        @flow(task_runner=taskloom_runner)
        def all_good() -> Any:
            return t.add.submit(1, 1), t.add.submit(2, 2)

        a, b = all_good()
        assert (a.result(), b.result()) == (2, 4)

    def test_a_state_made_by_hand_is_the_flows_state(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def by_hand() -> Any:
            t.add.submit(1, 1).wait()
            return taskloom.Failed("Test returned state", data="hello!")

        state = by_hand(return_state=True)
        assert state.is_failed() and state.message == "Test returned state"
        assert state.result(raise_on_failure=False) == "hello!"
        with pytest.raises(FailedRun, match="Test returned state"):
            by_hand()

    def test_a_task_that_returns_a_state_ends_in_it(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def returning() -> Any:
            return {kind: t.returns_state.submit(kind, f"{kind} by hand") for kind in ("Failed", "Cancelled", "Completed")}

        states = returning(return_state=True).result()
        assert states["Failed"].is_failed() and states["Failed"].message == "Failed by hand"
        with pytest.raises(FailedRun, match="Failed by hand"):
            states["Failed"].result()
        assert states["Cancelled"].is_cancelled()
        with pytest.raises(CancelledRun):
            states["Cancelled"].result()
        assert states["Completed"].is_completed() and states["Completed"].result() == "COMPLETED BY HAND"

    def test_futures_inside_dataclass_and_attrs_arguments_are_resolved(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def boxed() -> Any:
            three = t.add.submit(1, 2)
            box = t.Box([three, {"k": three}])
            from_box = t.unbox.submit(box).result()
            untouched = box.value[0] is three
            return from_box, t.unbox.submit(t.AttrsBox(three)).result(), untouched

        (kind, value), (attrs_kind, attrs_value), untouched = boxed()
        assert (kind, value) == ("Box", [3, {"k": 3}])
        assert (attrs_kind, attrs_value) == ("AttrsBox", 3)
        assert untouched, "the caller's own dataclass is left as it was"

    def test_futures_inside_pydantic_arguments_are_resolved(self, taskloom_runner: Any) -> None:
        pytest.importorskip("pydantic")
        model = t.pydantic_box()

        @flow(task_runner=taskloom_runner)
        def modelled() -> Any:
            return t.unbox.submit(model(value=t.add.submit(2, 2))).result()

        assert modelled() == ("PydanticBox", 4)

    def test_resolve_futures_to_states_and_results(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def resolving() -> Any:
            ok, bad = t.add.submit(1, 1), t.fail.submit("unresolvable")
            states = resolve_futures_to_states({"ok": [ok], "pair": (ok, bad)})
            results = resolve_futures_to_results({"ok": [ok], "box": t.Box(ok)})
            with pytest.raises(Exception, match="At least one result did not complete successfully"):
                resolve_futures_to_results([ok, bad])
            return {"states": states, "results": results, "plain": resolve_futures_to_states([1, "a"])}

        out = resolving(return_state=True).result()
        assert out["states"]["ok"][0].result() == 2 and out["states"]["pair"][1].is_failed()
        assert out["results"] == {"ok": [2], "box": t.Box(2)}
        assert out["plain"] == [1, "a"]

    # -- mapping --------------------------------------------------------------------------

    def test_a_state_given_as_an_argument_stands_for_its_result(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def given_states() -> Any:
            done = t.add(1, 2, return_state=True)
            failed = t.fail(message="given", return_state=True)
            plain = t.identity.submit(done).result()
            nested = t.identity.submit({"in": [done]}).result()
            allowed = t.identity.submit(taskloom.allow_failure(failed)).result()
            with pytest.raises(UpstreamTaskError, match="did not reach a 'COMPLETED' state"):
                t.identity.submit(failed)
            return plain, nested, type(allowed).__name__

        state = given_states(return_state=True)
        assert state.result(raise_on_failure=False) == (3, {"in": [3]}, "ConformanceError")

    def test_map_over_a_future_or_a_state_maps_over_its_result(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def over_results() -> Any:
            listed = t.numbers.submit(3)
            from_future = t.add.map(listed, 10)
            from_state = t.add.map(listed.state, 20)
            return from_future.result(), from_state.result()

        assert over_results() == ([10, 11, 12], [20, 21, 22])

        @flow(task_runner=taskloom_runner)
        def over_a_failure() -> Any:
            return t.add.map(t.fail.submit("not a list"), 1)

        with pytest.raises(UpstreamTaskError, match="did not reach a 'COMPLETED' state"):
            over_a_failure()

    def test_map_over_allow_failure_of_futures(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def tolerant() -> Any:
            upstream = [t.add.submit(1, 1), t.fail.submit("tolerated")]
            return t.identity.map(taskloom.allow_failure(upstream)).result()

        ok, failed = tolerant()
        assert ok == 2 and isinstance(failed, t.ConformanceError)

    def test_map_leaves_defaults_whole_and_maps_keyword_iterables(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def mapped() -> Any:
            defaults = t.with_default.map([1, 2]).result()
            keywords = t.keyword_total.map([1, 2], a=[10, 20], b=taskloom.unmapped(100), c=5).result()
            return defaults, keywords

        defaults, keywords = mapped()
        assert defaults == [(1, (1, 2)), (2, (1, 2))], "an iterable default goes whole to every run"
        assert keywords == [116, 127], "iterables given through **kwargs are mapped over"

    def test_map_over_a_dict_maps_its_keys_and_quote_maps_each_element(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def mapped() -> Any:
            keys = t.identity.map({"a": 1, "b": 2}).result()
            quoted = t.identity.map(taskloom.quote([[1, 2], [3]])).result()
            text = t.identity.map(["xy", "z"]).result()
            return keys, quoted, text

        keys, quoted, text = mapped()
        assert keys == ["a", "b"], "a dict is mapped over its keys, as in Prefect"
        assert quoted == [[1, 2], [3]], "quote(values) maps over the values, each passed as it is"
        assert text == ["xy", "z"], "strings are elements, not iterables to map over"

    def test_map_returns_a_list_that_waits_and_gives_results(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def listed() -> Any:
            futures = t.add.map([1, 2, 3], 1)
            assert isinstance(futures, list) and len(futures) == 3
            futures.wait()
            assert all(f.done() for f in futures)
            with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
                futures.result(timeout=-1)
            failing = t.fail.map(["a", "b"])
            errors = failing.result(raise_on_failure=False)
            return futures.result(), [type(e).__name__ for e in errors]

        assert listed() == ([2, 3, 4], ["ConformanceError", "ConformanceError"])

    # -- waiting --------------------------------------------------------------------------

    def test_wait_and_as_completed_check_their_timeout(self, taskloom_runner: Any) -> None:
        calls: list[str] = []

        @flow(task_runner=taskloom_runner)
        def waiting() -> Any:
            futures = [t.add.submit(i, i) for i in range(3)]
            for bad in (taskloom.wait, lambda f, timeout: list(taskloom.as_completed(f, timeout))):
                with pytest.raises(ValueError, match=r"^'timeout' must be a non-negative number"):
                    bad(futures, timeout=-1)
            taskloom.wait(futures)
            again = sorted(f.result() for f in taskloom.as_completed(futures, timeout=0))

            def broken(future: Any) -> None:
                calls.append("broken")
                raise RuntimeError("a callback that raises")

            futures[0].add_done_callback(broken)
            futures[0].add_done_callback(lambda future: calls.append("after"))
            pending = t.stamped.submit("late", 0.3)
            pending.add_done_callback(broken)
            pending.add_done_callback(lambda future: calls.append("after"))
            pending.wait()
            return again

        assert waiting() == [0, 2, 4], "as_completed(timeout=0) yields runs that are final already"
        assert calls == ["broken", "after", "broken", "after"], "a raising done-callback must not stop the next"

    # -- what the logs say ----------------------------------------------------------------

    def test_failed_runs_log_at_error_naming_the_exception(self, taskloom_runner: Any, run_logs: Any) -> None:
        retried = t.fail.with_options(retries=1, retry_delay_seconds=0)

        @flow(task_runner=taskloom_runner)
        def failing() -> None:
            retried.submit("exhausted")
            t.fail.submit("once")

        failing(return_state=True)
        errors = [r.getMessage() for r in run_logs.records if r.levelno == logging.ERROR]
        exhausted = [m for m in errors if "ConformanceError('exhausted')" in m]
        assert exhausted == [
            "Encountered exception during execution: ConformanceError('exhausted')",
            "Encountered exception during execution: ConformanceError('exhausted') - Retries are exhausted",
        ], errors
        assert "Encountered exception during execution: ConformanceError('once')" in errors
        finished = [m for m in errors if m.startswith("Finished in state Failed(")]
        assert len(finished) == 3, "two failed task runs and the flow run finish at ERROR"
