"""The scorer's alerts in a real Alertmanager: what it holds equals what fires in TierPulse,
through a silence, a resolution, an Alertmanager that cannot be reached, a SIGKILL of the worker
and a second worker taking partitions over (sinks/alertmanager.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import socketserver
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import ScorerRun, http_json, wait_for_async
from tests.integration.test_alertmanager import _request

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=6)


class CuttableProxy:
    """A TCP proxy to Alertmanager that the test can cut: an outage as the worker meets it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.cut = target, False
        self._open: list[socket.socket] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if proxy.cut:
                    return
                upstream = socket.create_connection(proxy.target)
                proxy._open += [self.request, upstream]
                pipe = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
                pipe.start()
                _pipe(self.request, upstream)
                pipe.join()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:  # kept-alive connections too
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(alertmanager_url: str) -> Iterator[CuttableProxy]:
    host, port = urllib.parse.urlsplit(alertmanager_url).netloc.split(":")
    running = CuttableProxy((host, int(port)))
    yield running
    running.close()


def _ticket(customer: str, ticket: str, kind: str, minutes: float, priority: str = "P1") -> Any:
    body: dict[str, Any] = {
        "event_id": f"{ticket}-{kind}",
        "customer_id": customer,
        "ticket_id": ticket,
        "type": kind,
        "occurred_at": (BASE + timedelta(minutes=minutes)).isoformat(),
    }
    if kind == "opened":
        body["priority"] = priority
    return "tickets", customer.encode(), json.dumps(body).encode()


def _clock(customers: range, minutes: float) -> list[Any]:
    """A P4 ticket per customer: moves every partition's event time on (no rule watches P4)."""
    return [_ticket(f"c{i:02d}", f"clock-{i}-{minutes}", "opened", minutes, "P4") for i in customers]


def _held(alertmanager_url: str, service: str) -> dict[str, dict[str, Any]]:
    """What Alertmanager holds of this scorer's alerts (active or suppressed), by alert_id."""
    query = urllib.parse.urlencode({"filter": f'service="{service}"'})
    _, alerts = _request(f"{alertmanager_url}/api/v2/alerts?{query}")
    return {a["labels"]["alert_id"]: a for a in alerts}


async def _firing_per_topic(scorer: ScorerRun) -> set[str]:
    last: dict[str, str] = {}
    for record in await scorer.read("alerts"):
        last[record["alert_id"]] = record["state"]
    return {alert_id for alert_id, state in last.items() if state == "firing"}


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, scorer: ScorerRun) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{scorer.logs()[-3000:]}")
        await asyncio.sleep(0.5)


def _equal_sets(scorer: ScorerRun, alertmanager_url: str, expected: int) -> Callable[[], Awaitable[bool]]:
    """Alertmanager holds exactly the alerts firing per the alerts topic, ``expected`` of them."""

    async def check() -> bool:
        firing = await _firing_per_topic(scorer)
        return len(firing) == expected and firing == set(_held(alertmanager_url, scorer.name))

    return check


async def test_an_alert_reaches_alertmanager_with_its_labels_is_silenced_and_resolves(
    scorer: ScorerRun, alertmanager_url: str, unique_name: Callable[[str], str]
) -> None:
    customer = unique_name("客户")  # alert ids are deterministic: another run's silence must not match
    scorer.extra_env["TIERPULSE_ALERTMANAGER_URL"] = alertmanager_url
    _, port = scorer.start_worker()
    await scorer.produce(
        [_ticket(customer, "t-1", "opened", 0), _ticket(customer, "clock", "opened", 120, "P4")]
    )
    await wait_for_async(
        lambda: _held(alertmanager_url, scorer.name), 60, "the alert in Alertmanager", scorer.logs
    )
    [(alert_id, held)] = _held(alertmanager_url, scorer.name).items()
    [fired] = await scorer.read("alerts")
    assert fired["alert_id"] == alert_id
    assert http_json(f"http://127.0.0.1:{port}/readyz")[1]["alertmanager"] == "up"
    status, snapshot = http_json(
        f"http://127.0.0.1:{port}/customers/{quote(customer)}"
    )  # unchanged since it fired
    assert status == 200, snapshot
    assert held["labels"] == {
        "alertname": "p1_ticket_unanswered",
        "severity": "warning",
        "customer_id": customer,
        "subject": "t-1",
        "segment": snapshot["segment"],
        "tier": snapshot["tier"],
        "account_manager": "unassigned",
        "region": "unassigned",
        "alert_id": alert_id,
        "service": scorer.name,
    }
    assert held["annotations"]["summary"].startswith(
        f"{customer}: ticket t-1 unanswered, 60 min past its SLA deadline"
    )
    assert held["annotations"]["snapshot_url"].endswith(f"/customers/{quote(customer, safe='')}")
    assert held["startsAt"].startswith((BASE + timedelta(minutes=120)).strftime("%Y-%m-%dT%H:%M"))

    silence = {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in (("alert_id", alert_id), ("service", scorer.name))
        ],
        "startsAt": NOW.isoformat(),
        "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "createdBy": "the integration test",
        "comment": "on it",
    }
    status, created = _request(f"{alertmanager_url}/api/v2/silences", json.dumps(silence).encode())
    assert status == 200, created
    await wait_for_async(
        lambda: _held(alertmanager_url, scorer.name)[alert_id]["status"]["state"] == "suppressed",
        30,
        "the silence to suppress it",
    )
    assert _held(alertmanager_url, scorer.name)[alert_id]["status"]["silencedBy"] == [created["silenceID"]]

    await scorer.produce([_ticket(customer, "t-1", "first_response", 121)])
    await wait_for_async(
        lambda: not _held(alertmanager_url, scorer.name), 60, "the alert to resolve", scorer.logs
    )
    assert [a["state"] for a in await scorer.read("alerts")] == ["firing", "resolved"]


async def test_alertmanager_holds_what_fires_after_an_outage_a_kill_and_a_takeover(
    scorer: ScorerRun, alertmanager_url: str, proxy: CuttableProxy
) -> None:
    # Re-posts only every minute: an alert left open would stay past this test's waits, so
    # equality can only come from posting and reconciling, not from alerts timing out.
    scorer.extra_env |= {
        "TIERPULSE_ALERTMANAGER_URL": f"http://127.0.0.1:{proxy.port}",
        "TIERPULSE_ALERTMANAGER_RESEND_SECONDS": "60",
    }
    first, _ = scorer.start_worker(0)
    # 30 P1 tickets, unanswered past their deadline: 30 alerts fire.
    await scorer.produce(
        [_ticket(f"c{i:02d}", f"t-{i}", "opened", i) for i in range(30)] + _clock(range(40), 180)
    )
    await _until(_equal_sets(scorer, alertmanager_url, 30), 90, "30 alerts in Alertmanager", scorer)

    proxy.set_cut(True)  # Alertmanager out of reach: 15 resolve and 10 fire, none of it posted
    answers = [_ticket(f"c{i:02d}", f"t-{i}", "first_response", 185) for i in range(15)]
    opened = [_ticket(f"c{i:02d}", f"t-{i}", "opened", 190) for i in range(30, 40)]
    await scorer.produce(answers + opened + _clock(range(40), 300))
    await _until(lambda: _counted(scorer, 25), 90, "the alerts topic to say 25 fire", scorer)
    scorer.kill(first)
    proxy.set_cut(False)

    scorer.start_worker(0)  # adopts every partition: posts what fires, resolves what does not
    await _until(_equal_sets(scorer, alertmanager_url, 25), 90, "Alertmanager to hold the 25", scorer)

    scorer.start_worker(1)  # takes partitions over, and with them their posting
    await wait_for_async(
        lambda: scorer.settled(2), 90, "the two workers to split the partitions", scorer.logs
    )
    await scorer.produce(
        [_ticket(f"c{i:02d}", f"t-{i}", "first_response", 305) for i in range(15, 20)]
        + _clock(range(40), 320)
    )
    await _until(_equal_sets(scorer, alertmanager_url, 20), 90, "Alertmanager to hold the 20", scorer)
    # The gauge, counted from what each worker's partitions store: 20 between the two.
    assert sum(_firing_gauge(port) for port in scorer.ports[-2:]) == 20
    assert "Traceback" not in scorer.logs()


def _firing_gauge(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tierpulse_alerts_firing{")
    )


async def _counted(scorer: ScorerRun, expected: int) -> bool:
    return len(await _firing_per_topic(scorer)) == expected
