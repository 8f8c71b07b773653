"""The Ray runner held to the conformance kit, on the session's Ray head."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom.testing import RunnerConformance

pytestmark = [pytest.mark.ray, pytest.mark.slow]


class TestRayConformance(RunnerConformance):
    """Every case of the kit, nothing skipped, with runners connected to the session head."""

    @pytest.fixture
    def taskloom_runner(self, head_runner: Any) -> Any:
        return head_runner
