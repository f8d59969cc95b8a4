"""Kafka security end to end, against the dev broker's SASL_SSL listener (a SCRAM-SHA-512 user
made by `kafka-storage format --add-scram`, a certificate signed by a CA made for it:
deploy/kafka_security.py): a worker whose every client goes through it scores a messy stream
exactly; a wrong password is refused in one line, exit code 2, and no secret is printed."""

from __future__ import annotations

import os
import subprocess
import sys

from deploy import services
from tests.integration.harness import REPO, ScorerRun
from tests.integration.test_resilience import demo_log, final_state_is_exact


async def test_a_worker_scores_exactly_through_scram_over_tls(
    scorer: ScorerRun, layout: services.Layout
) -> None:
    secured = services.secured_kafka(layout)
    scorer.extra_env.update(secured.client_env())  # the worker: topics admin, consumer, producer
    log = demo_log(customers=12, days=10, seed=5)
    scorer.start_worker()
    await scorer.produce(log)  # (the test's own clients use the plaintext listener of the broker)
    await final_state_is_exact(scorer, log)
    assert secured.password not in scorer.logs()


def test_a_wrong_password_is_one_line_and_exit_code_2(layout: services.Layout) -> None:
    secured = services.secured_kafka(layout)
    env = {**os.environ, **secured.client_env(), "TIERPULSE_BROKER_PASSWORD": "not-the-password-42"}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "not-the-password-42" not in output
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Kafka at kafka://127.0.0.1:") and "security SASL_SSL" in last
