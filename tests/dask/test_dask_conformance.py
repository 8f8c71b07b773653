"""The Dask runner held to taskloom's conformance kit, on both session clusters."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom.testing import RunnerConformance

pytestmark = [pytest.mark.dask, pytest.mark.slow]


class TestDaskConformanceLocalCluster(RunnerConformance):
    """Connected by address to a LocalCluster started by the test session."""

    @pytest.fixture
    def taskloom_runner(self, local_cluster: Any) -> Any:
        from taskloom_dask import DaskTaskRunner

        return DaskTaskRunner(address=local_cluster.scheduler_address)


class TestDaskConformanceProcessCluster(RunnerConformance):
    """Connected to ``dask scheduler`` and ``dask worker`` processes started apart."""

    @pytest.fixture
    def taskloom_runner(self, process_cluster: Any) -> Any:
        from taskloom_dask import DaskTaskRunner

        return DaskTaskRunner(address=process_cluster.address)
