"""Fixtures for the scorer's integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ScorerRun


@pytest.fixture
def scorer(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[ScorerRun]:
    run = ScorerRun(unique_name("tp"), kafka_bootstrap, redis_url, tmp_path)
    yield run
    run.stop_all()
