"""Session fixtures: the real services, started once by deploy/services.py.

Unit tests never request these, so they run without any service. A service the
session started is stopped at the end; one that was already running (a developer
left `deploy/dev run` up) is left alone.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from deploy import services

# HYPOTHESIS_PROFILE=thorough runs the property tests twenty times harder than CI does.
settings.register_profile("ci", max_examples=300)
settings.register_profile("thorough", max_examples=6000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def layout() -> Iterator[services.Layout]:
    layout = services.Layout.from_env()
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        started = services.up(layout)
    except services.ServiceError as error:
        pytest.fail(f"could not start the real services: {error}", pytrace=False)
    yield layout
    if not os.environ.get("TIERPULSE_KEEP_SERVICES"):
        for name in reversed(started):
            services.stop(layout, name)


@pytest.fixture(scope="session")
def kafka_bootstrap(layout: services.Layout) -> str:
    return layout.bootstrap


@pytest.fixture(scope="session")
def redis_url(layout: services.Layout) -> str:
    return f"redis://127.0.0.1:{layout.redis_port}/0"


@pytest.fixture(scope="session")
def prometheus_url(layout: services.Layout) -> str:
    return f"http://127.0.0.1:{layout.prometheus_port}"


@pytest.fixture(scope="session")
def alertmanager_url(layout: services.Layout) -> str:
    return layout.alertmanager_url


@pytest.fixture(scope="session")
def webhook_log(layout: services.Layout) -> Path:
    """What Alertmanager sent its receivers: one JSON document per notification."""
    return layout.webhook_log


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Fresh topic / group / key names per test, so tests never see each other's data."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-")
    run = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{test}-{run}"
