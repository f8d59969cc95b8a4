"""Which Kafka security every client gets (streams/security.py), from the settings alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.security import aiokafka_options, security_protocol
from streams.settings import Settings

CA = Path("ca.pem")  # made by the fixture below, in the test's directory


@pytest.fixture(autouse=True)
def _a_ca_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA certificate for the TLS cases to load (the context reads the file)."""
    monkeypatch.chdir(tmp_path)
    subject = ["-subj", "/CN=test CA", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *subject],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("given", "protocol"),
    [
        ({}, "PLAINTEXT"),
        ({"broker_sasl_mechanism": "SCRAM-SHA-512"}, "SASL_PLAINTEXT"),
        ({"broker_sasl_mechanism": "SCRAM-SHA-512", "broker_ssl_cafile": CA}, "SASL_SSL"),
        ({"broker_ssl_cafile": CA}, "SSL"),
        ({"broker_security_protocol": "SSL"}, "SSL"),  # TLS with the system's CAs
    ],
)
def test_the_protocol_follows_from_what_is_set(given: dict[str, object], protocol: str) -> None:
    settings = Settings(**given)  # type: ignore[arg-type]
    assert security_protocol(settings) == protocol
    options = aiokafka_options(settings)
    assert options["security_protocol"] == protocol
    assert (options["ssl_context"] is not None) == protocol.endswith("SSL")
    assert ("sasl_mechanism" in options) == protocol.startswith("SASL")


def test_sasl_options_carry_the_user_and_the_password() -> None:
    settings = Settings(
        broker_sasl_mechanism="SCRAM-SHA-256",
        broker_username="svc",
        broker_password="pw",  # type: ignore[arg-type]
    )
    options = aiokafka_options(settings)
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-256",
        "svc",
        "pw",
    )
    assert "pw" not in repr(settings)


def test_a_sasl_protocol_without_a_mechanism_is_refused() -> None:
    with pytest.raises(ValueError, match="needs TIERPULSE_BROKER_SASL_MECHANISM"):
        Settings(broker_security_protocol="SASL_SSL")  # type: ignore[arg-type]
