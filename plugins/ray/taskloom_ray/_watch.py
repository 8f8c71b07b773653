"""`ClusterWatch`: notices a lost Ray head or node and ends the runs that went with it.

**The head.** When the head's processes die (an out-of-memory kill, a host that goes away),
Ray tells a driver nothing about the task runs it had queued: their ``ObjectRef``s never
complete, and about a minute later Ray's core ends the whole driver process ("Failed to connect
to GCS within 60 seconds ... The program will terminate"). So a thread of the runner opens a
TCP connection to the head's address once a second, and after three failures in a row
(refused, or no answer within a second) the head is lost. Then the watch

1. closes this process's Ray connection, so that Ray does not end the flow's process and
   nothing waits on a cluster that is gone (waiting `DISCONNECT_WAIT` seconds at most);
2. settles every run still in flight with `HeadLostError`, one sentence naming the address
   and what was lost. It is a `ConnectionError`, not a `CancelledError`: nobody cancelled the
   runs, so the core marks them Crashed, or retries them when their task has retries left;
   a retry, like any later submit, gets the same error at once.

A Ray error that says a worker or node was lost also makes the watch probe the head at once:
when the head does not answer either, that run too is reported as lost with the head.

**A node.** When a node other than the head loses its link, the head marks it dead after its
health checks fail (``health_check_period_ms`` times ``health_check_failure_threshold``, plus
``health_check_timeout_ms`` each: about half a minute by default), and tells the driver. Ray
fails a task already running there only when the driver's connection to that worker times
out, which over a silent link takes gRPC's keepalive: minutes. So on a cluster of several
nodes each run notes its node in the cluster's key-value store (`_worker._note_node`), the
watch asks Ray for dead nodes once a second, and the runs in flight noted on a dead node end
with `NodeLostError` (Crashed, or retried elsewhere).

A run that Ray had handed to the dead node's worker but that had not noted its node yet (the
worker was still starting, or loading the call) has no note. For the runs in flight when the
node died, and only then, the watch asks Ray's own record: the task events the flow's process
reports to the head name the node each task was handed to (`_task_events`). A run Ray says was
on the dead node ends the same way; a run on a live node (by Ray's record or by its note) is
never ended. A run Ray's record holds as not placed anywhere, read after read while the
cluster has the resources it needs free, sits in a queue whose lease request went to the dead node (Ray asks
another node only when that connection times out): it ends too (`_end_unnoted_runs`). Runs
submitted after the death go to a queue of their own, off the dead nodes (`avoid`). A run
Ray's record does not know is left to Ray. Nothing of this runs while every node is alive.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._task_events import fits, handed_to
from ._worker import NODE_NOTES, NOTES_NAMESPACE

if TYPE_CHECKING:
    from ._handles import RayTaskFuture

__all__ = ["ClusterWatch", "HeadLostError", "NodeLostError"]

logger = logging.getLogger("taskloom.task_runner.ray")

#: Seconds between two probes of the head, and the wait for one probe's answer.
PROBE_PERIOD = 1.0
#: Probes that fail in a row before the head counts as lost (a busy head still accepts a
#: TCP connection: the kernel does, not Ray).
PROBE_FAILURES = 3
#: Seconds between seeing a node dead and ending its runs. The runs' retries are submitted at
#: once; until every raylet has heard of the death, Ray may still lease one to the dead node,
#: where it would wait for gRPC's keepalive (minutes).
NODE_DEATH_GRACE = 3.0
#: Seconds after a node's death during which the runs queued at that moment are followed in
#: Ray's task events (read once a second while some of them are not placed yet).
QUEUED_WINDOW = 60.0
#: Reads in a row (a second apart) that must find a run not placed while the cluster has the
#: resources it needs free before it counts as held back (the flow's process reports its task events to the
#: head once a second, so one read may not know yet where a run went).
HELD_BACK_READS = 3
#: Seconds the runs in flight wait for the lost head's connection to close before they end:
#: more than Ray's own ``ray.shutdown()`` takes then (it flushes task events to the dead head
#: for ``task_events_shutdown_flush_timeout_ms``, 5 s by default), less than Ray's minute.
DISCONNECT_WAIT = 10.0


class HeadLostError(ConnectionError):
    """The Ray head is gone: the run's Ray task, and the results kept on the cluster, with it.

    Not a `CancelledError`: the core marks the run Crashed, or retries it.
    """


class NodeLostError(ConnectionError):
    """The Ray node running the run is dead (its host or its link went down)."""


class UpstreamLostError(ConnectionError):
    """An upstream run was lost with its node, so Ray never starts this one."""


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host.strip("[]"), port), timeout=PROBE_PERIOD).close()
    except OSError:
        return False
    return True


class ClusterWatch:
    """Probes the head at ``host:port`` from a daemon thread, and reads Ray's node table from
    another.

    ``disconnect`` is called once, on a thread of its own, when the head is lost; then every
    run in flight (`track`) is settled with the `HeadLostError`. With ``ray`` (the module;
    None for a Ray Client connection, which cannot read the node table or the key-value
    store) the watch also ends the runs of a node that dies.
    """

    def __init__(
        self,
        address: str,
        host: str,
        port: int,
        disconnect: Callable[[], None],
        ray: Any = None,
    ) -> None:
        self.address = address
        self._host, self._port = host, port
        self._disconnect = disconnect
        self._ray = ray
        self._lock = threading.Lock()
        self._in_flight: set[RayTaskFuture] = set()
        self._stopped = threading.Event()
        self._wake = threading.Event()  # a run saw its worker lost: probe now
        self._thread: threading.Thread | None = None
        self._nodes_thread: threading.Thread | None = None
        self._alive: dict[str, str] = {}  # node id -> where (ip, hostname), as last seen
        self._dead: dict[str, str] = {}  # nodes that died while this watch ran
        self._died_at: dict[str, float] = {}  # when the watch first saw each dead
        self._queued: dict[str, set[RayTaskFuture]] = {}  # runs in flight when each died
        self._unplaced: dict[RayTaskFuture, int] = {}  # reads in a row: not placed, with room
        self._job = ""
        #: Set once the head is lost; every later run gets it at once.
        self.lost: HeadLostError | None = None
        #: Whether runs should note their node (the cluster has more than one).
        self.note_nodes = False
        #: Once a node died: a Ray label selector of the nodes that are not dead, for the runs
        #: submitted from then on (see `RayTaskRunner._remote_for`); None while all are alive.
        self.avoid: str | None = None

    def start(self) -> None:
        if self._ray is not None:
            try:
                self._job = self._ray.get_runtime_context().get_job_id()
                self._poll_nodes()
            except Exception as exc:  # the head's watch still works
                logger.debug("Reading Ray's node table: %r", exc)
                self._ray = None
        self._thread = threading.Thread(target=self._watch, name="taskloom-ray-watch", daemon=True)
        self._thread.start()
        if self._ray is not None:
            self._nodes_thread = threading.Thread(target=self._watch_nodes, name="taskloom-ray-nodes", daemon=True)
            self._nodes_thread.start()

    def stop(self) -> None:
        """Stop watching (the runner is leaving its Ray); runs still tracked are let go."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * PROBE_PERIOD)
        nodes = self._nodes_thread
        if nodes is not None and self.lost is None:
            # Out of its Ray call before the runner shuts Ray down (after a lost head, a read
            # may hang by design: not waited for).
            nodes.join(timeout=2 * PROBE_PERIOD)
        with self._lock:
            self._in_flight.clear()

    # -- the runs in flight ------------------------------------------------------------------

    def track(self, future: RayTaskFuture) -> None:
        """Follow a run until it is done; after the head is lost, settle it at once."""
        with self._lock:
            lost = self.lost
            if lost is None:
                self._in_flight.add(future)
        if lost is not None:
            future._settle(lost)

    def done(self, future: RayTaskFuture) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def confirm_lost(self) -> HeadLostError | None:
        """The head's error if it is lost or does not answer now (asked when a worker was lost)."""
        if self.lost is not None or self._stopped.is_set():
            return self.lost
        if _answers(self._host, self._port):
            return None
        self._wake.set()  # the watch's thread disconnects and settles the others
        return self._head_error()

    # -- the watch's thread ------------------------------------------------------------------

    def _head_error(self) -> HeadLostError:
        return HeadLostError(
            f"Lost the connection to the Ray head at {self.address} before this run finished; "
            "the run's Ray task and any results kept on the cluster were lost with it."
        )

    def _watch(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            woken = self._wake.wait(PROBE_PERIOD)
            if self._stopped.is_set():
                return
            if _answers(self._host, self._port):
                failures = 0
                self._wake.clear()
                continue
            failures += 1
            if woken or failures >= PROBE_FAILURES:
                self._lose_head()
                return

    def _lose_head(self) -> None:
        error = self._head_error()
        with self._lock:
            if self._stopped.is_set():
                return  # the runner is leaving: closing a private Ray is not losing it
            self.lost = error  # from now on, a submit gets the error instead of reaching Ray
        logger.error(
            "Lost the Ray head at %s (it does not answer); the runs in flight end Crashed, "
            "and this process's connection to that Ray is closed.",
            self.address,
        )
        # Before the runs in flight end (Ray would end this process in a minute, and a flow
        # that ends must not wait on the lost cluster), but a stuck close must not stop them.
        closing = threading.Thread(target=self._close, name="taskloom-ray-disconnect", daemon=True)
        closing.start()
        closing.join(DISCONNECT_WAIT)
        if closing.is_alive():
            logger.warning(
                "Closing the connection to the lost Ray head at %s has not finished after %g s; "
                "the runs in flight end Crashed without waiting for it.", self.address, DISCONNECT_WAIT,
            )  # fmt: skip
            atexit.register(closing.join, DISCONNECT_WAIT)  # before Ray's own ray.shutdown at exit
        with self._lock:
            runs, self._in_flight = list(self._in_flight), set()
        for future in runs:
            future._settle(error)

    def _close(self) -> None:
        try:
            self._disconnect()
        except Exception as exc:  # closing anyway
            logger.debug("Closing the Ray connection after losing its head: %r", exc)

    # -- nodes -------------------------------------------------------------------------------

    def _watch_nodes(self) -> None:
        """Read Ray's node table once a second, on a thread apart from the head's probes: a
        read that the head's death cuts off waits inside Ray for its minute, and the probes
        must go on meanwhile to notice the loss in seconds."""
        while not self._stopped.wait(PROBE_PERIOD):
            if self.lost is not None:
                return
            try:
                self._poll_nodes()
            except Exception as exc:  # the head's probe decides; try again next time
                logger.debug("Reading Ray's node table: %r", exc)

    def _poll_nodes(self) -> None:
        assert self._ray is not None
        alive: dict[str, str] = {}
        for node in self._ray.nodes():
            where = f"{node.get('NodeManagerAddress', '?')} ({node.get('NodeManagerHostname', '?')})"
            if node.get("Alive"):
                alive[node["NodeID"]] = where
            elif node["NodeID"] in self._alive and node["NodeID"] not in self._dead:
                self._dead[node["NodeID"]] = where
                self._died_at[node["NodeID"]] = time.monotonic()
                with self._lock:
                    self._queued[node["NodeID"]] = set(self._in_flight)
                reason = str(node.get("DeathReasonMessage") or "").strip().splitlines()
                logger.warning(
                    "The Ray node at %s is dead%s; its runs in flight end Crashed (or are retried).",
                    where,
                    f" ({reason[0].rstrip('.')})" if reason else "",
                )
        self._alive = alive
        self.note_nodes = len(alive) > 1
        if self._dead:
            self.avoid = f"!in({','.join(sorted(self._dead))})"
        if self._dead and self._in_flight:
            self._end_runs_on_dead_nodes()

    def _end_runs_on_dead_nodes(self) -> None:
        from ray.experimental import internal_kv

        with self._lock:
            in_flight = set(self._in_flight)
        by_task = {future.ref.task_id().hex(): future for future in in_flight}
        lost: set[RayTaskFuture] = set()
        now = time.monotonic()
        for node_id, where in self._dead.items():
            since = now - self._died_at.get(node_id, 0.0)
            if since < NODE_DEATH_GRACE:
                continue
            prefix = f"{NODE_NOTES}{self._job}/{node_id}/"
            keys = internal_kv._internal_kv_list(prefix, namespace=NOTES_NAMESPACE)
            for key in keys:
                task_id = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
                future = by_task.pop(task_id, None)
                if future is None:
                    continue
                lost.add(future)
                internal_kv._internal_kv_del(key, namespace=NOTES_NAMESPACE)
                self._lose(future, where)
            queued = self._queued.get(node_id)
            if queued is not None:
                queued &= in_flight - lost
                if not queued or since > QUEUED_WINDOW:
                    del self._queued[node_id]
        lost |= self._end_unnoted_runs()
        if lost:
            self._end_runs_waiting_for(lost)

    def _end_unnoted_runs(self) -> set[RayTaskFuture]:
        """The runs queued when a node died that Ray handed to a dead node, or holds back.

        Ray's task events say where each was handed to: one on a dead node ends; one on a live
        node is left alone, as is one that noted a live node. One Ray's events hold as not
        placed at all may sit in a queue whose lease request went to the dead node, which Ray
        retries elsewhere only when that connection times out (minutes): once
        `HELD_BACK_READS` reads in a row found it so while the cluster had the resources it
        needs free (and its upstream runs are done), it ends too, Crashed or retried.
        """
        queued = {future for runs in self._queued.values() for future in runs}
        if not queued:
            self._unplaced.clear()
            return set()
        by_task = {future.ref.task_id().hex(): future for future in queued}
        placed = handed_to(set(by_task), self._job)
        if placed is None:  # Ray's record cannot be read: leave the runs to Ray
            return set()
        free = self._free_resources()
        noted = self._noted_tasks() if free else None
        if noted is None:
            free = {}  # cannot say which runs started: none counts as held back this time
        ended: set[RayTaskFuture] = set()
        for node_id, runs in self._queued.items():
            where = self._dead[node_id]
            for future in list(runs):
                task_id = future.ref.task_id().hex()
                node, needs = placed.get(task_id, (None, {}))
                if node in self._dead:
                    self._lose(future, self._dead[node])
                elif node or task_id in (noted or ()):
                    runs.discard(future)  # on a live node: Ray finishes it
                    self._unplaced.pop(future, None)
                    continue
                elif node is None or not fits(needs, free) or future.upstream_running():
                    self._unplaced.pop(future, None)  # unknown to Ray, or rightly waiting
                    continue
                else:
                    reads = self._unplaced[future] = self._unplaced.get(future, 0) + 1
                    if reads < HELD_BACK_READS:
                        continue
                    self.done(future)
                    future._settle(
                        NodeLostError(
                            f"Ray held task run {future._task_run.name!r} in a queue that waited "
                            f"on the lost Ray node at {where}, and did not place it although "
                            "live nodes had room (Ray moves such a run only when the dead "
                            "node's connection times out, minutes later)."
                        )
                    )
                runs.discard(future)
                self._unplaced.pop(future, None)
                ended.add(future)
        return ended

    def _noted_tasks(self) -> set[str] | None:
        """The Ray task ids of the runs that noted their node (they started somewhere)."""
        from ray.experimental import internal_kv

        prefix = f"{NODE_NOTES}{self._job}/"
        try:
            keys = internal_kv._internal_kv_list(prefix, namespace=NOTES_NAMESPACE)
        except Exception:  # cannot say: nothing counts as held back this time
            return None
        return {(key.decode() if isinstance(key, bytes) else key).rsplit("/", 1)[-1] for key in keys}

    def _free_resources(self) -> dict[str, float]:
        try:
            return dict(self._ray.available_resources())  # type: ignore[union-attr]
        except Exception:  # cannot say: leave the runs to Ray
            return {}

    def _lose(self, future: RayTaskFuture, where: str) -> None:
        self.done(future)
        future._settle(
            NodeLostError(
                f"The Ray node at {where} running task run {future._task_run.name!r} was lost "
                "before the run finished (the head marked it dead: its host or its "
                "link went down)."
            )
        )

    def _end_runs_waiting_for(self, lost: set[RayTaskFuture]) -> None:
        """Runs in flight that take a lost run's result: Ray would wait for it as long."""
        while lost:
            with self._lock:
                waiting = {future for future in self._in_flight if future.waits_for(lost)}
                self._in_flight -= waiting
            for future in waiting:
                # Not a lost node of its own: the run did not start, and its result() gives
                # the engine's answer for a lost upstream run (NotReady), as on a lost worker.
                future._settle(UpstreamLostError("An upstream run was lost with its Ray node."))
            lost = waiting
