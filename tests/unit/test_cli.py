"""The command line's refusals and answers, in process: one line per problem and exit code 2,
never a traceback; the policy check; what `follow` calls a customer's weakest KPIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.policy import DEFAULT_POLICY_PATH
from streams import cli


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_a_bad_setting_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERPULSE_PARTITIONS", "abc")
    assert cli.main(["worker"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and errors[0].startswith("error: TIERPULSE_PARTITIONS='abc': ")


def test_a_list_setting_that_is_not_json_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERPULSE_WATCH_LIST", "a,b")
    assert cli.main(["worker"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "watch_list" in errors[0] and "JSON" in errors[0]


def test_a_window_of_partial_buckets_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERPULSE_WINDOW_SECONDS", "1000")
    assert cli.main(["worker"]) == 2  # (no broker is asked: none runs for the unit tests)
    assert _errors(capsys) == [
        "error: TIERPULSE_WINDOW_SECONDS (1000) must be a whole number of TIERPULSE_BUCKET_SECONDS (86400)"
    ]


def test_policy_check_summarises_a_valid_policy_and_lists_every_problem_of_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["policy", "check", str(DEFAULT_POLICY_PATH)]) == 0
    summary = capsys.readouterr().out
    assert "): valid" in summary and "segment key_account:" in summary
    assert "alert p1_ticket_near_sla_breach (critical): a P1 ticket" in summary
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: x\ntiers: [only_one]\ndefault_segment: nowhere\nsegments: {}\n")
    assert cli.main(["policy", "check", str(bad)]) == 2
    errors = _errors(capsys)
    assert "is invalid" in errors[0] and len(errors) >= 3  # the head line and each problem
    assert cli.main(["policy", "check", str(tmp_path / "missing.yaml")]) == 2
    assert _errors(capsys)[0].startswith("error: ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("tierpulse ")


def test_the_weakest_kpis_are_those_that_lose_the_most_points() -> None:
    reasons = [
        {"kpi": "complaint_rate", "value": 0.0, "score": 100.0, "weight": 1.0, "contribution": 10.0},
        {"kpi": "csat", "value": 3.0, "score": 50.0, "weight": 2.0, "contribution": 30.0},
        {"kpi": "revenue", "value": 1.0, "score": 90.0, "weight": 5.0, "contribution": 45.0},
    ]
    assert [r["kpi"] for r in cli.weakest(reasons)] == ["csat", "revenue"]  # type: ignore[misc]


def test_worker_help_lists_every_variable_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERPULSE_BROKER_PASSWORD", "hunter2-help")
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    text = capsys.readouterr().out
    assert "TIERPULSE_PARTITIONS=4" in text and "TIERPULSE_TOPICS__ORDERS=orders" in text
    assert "TIERPULSE_STATE_CACHE_CUSTOMERS=1000" in text and "hunter2-help" not in text


def test_the_worker_takes_a_log_level_and_refuses_one_that_is_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[str] = []
    monkeypatch.setattr(cli, "_worker", lambda settings: started.append(settings.log_level) or 0)
    assert cli.main(["worker", "-l", "debug"]) == 0
    assert started == ["debug"]
    with pytest.raises(SystemExit) as refused:
        cli.main(["worker", "-l", "loud"])
    assert refused.value.code == 2 and "invalid choice: 'loud'" in capsys.readouterr().err


def test_importing_the_faust_entry_module_touches_no_broker(tmp_path: Path) -> None:
    # `faust -A streams.worker worker --help` imports it: with no Kafka, it must still answer.
    import subprocess
    import sys

    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "TIERPULSE_BROKER": "kafka://127.0.0.1:9",  # nothing listens on the discard port
        "TIERPULSE_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", "import streams.worker as w; print(type(w.app).__name__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ScorerApp"
