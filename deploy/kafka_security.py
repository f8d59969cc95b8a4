"""The dev Kafka's secured listener: SASL_SSL with a SCRAM-SHA-512 user and a certificate signed
by a CA made here — what a managed Kafka looks like, so that every client is tested against one.

The material is made once per Kafka data directory with openssl (``tls/`` in it): the CA that
clients trust, the broker's PKCS#12 keystore, and the passwords. The user is created when the
storage is formatted (``kafka-storage format --add-scram``), as KRaft clusters do it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

USERNAME = "tierpulse"
MECHANISM = "SCRAM-SHA-512"
LISTENER = "SECURED"


class SecurityMaterialError(Exception):
    """openssl failed or is missing; the message says which step."""


@dataclass(frozen=True)
class SecuredListener:
    port: int
    cafile: Path  # what a client trusts
    username: str
    password: str
    keystore: Path  # the broker's key and certificate
    keystore_password: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The TIERPULSE_* settings of a client that reaches the broker through this listener."""
        return {
            "TIERPULSE_BROKER": f"kafka://{self.bootstrap}",
            "TIERPULSE_BROKER_SASL_MECHANISM": MECHANISM,
            "TIERPULSE_BROKER_USERNAME": self.username,
            "TIERPULSE_BROKER_PASSWORD": self.password,
            "TIERPULSE_BROKER_SSL_CAFILE": str(self.cafile),
        }

    def broker_properties(self) -> dict[str, str]:
        """What server.properties adds for this listener (to the plaintext one's)."""
        prefix = f"listener.name.{LISTENER.lower()}"
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.{MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}.ssl.keystore.type": "PKCS12",
            f"{prefix}.ssl.keystore.location": str(self.keystore),
            f"{prefix}.ssl.keystore.password": self.keystore_password,
            f"{prefix}.ssl.key.password": self.keystore_password,
        }

    def format_arguments(self) -> list[str]:
        return ["--add-scram", f"{MECHANISM}=[name={self.username},password={self.password}]"]


def secured_listener(data: Path, port: int) -> SecuredListener:
    """The listener's material in ``data``/tls, made on first use."""
    tls = data / "tls"
    if not (tls / "broker.p12").exists():
        _make(tls)
    return SecuredListener(
        port=port,
        cafile=tls / "ca.pem",
        username=USERNAME,
        password=(tls / "scram-password").read_text().strip(),
        keystore=tls / "broker.p12",
        keystore_password=(tls / "keystore-password").read_text().strip(),
    )


def _make(tls: Path) -> None:
    if shutil.which("openssl") is None:
        raise SecurityMaterialError("openssl not found: install it with 'apt-get install openssl'")
    tls.mkdir(parents=True, exist_ok=True)
    keystore_password = secrets.token_hex(16)
    (tls / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"]
    request = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr"]
    sign = ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
    bundle = ["pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-out", "broker.p12"]
    steps = [
        [*ca, "-days", "3650", "-subj", "/CN=TierPulse dev CA"],
        [*request, "-subj", "/CN=127.0.0.1"],
        [*sign, "-out", "broker.pem", "-days", "3650", "-extfile", "ext.cnf"],
        [*bundle, "-passout", f"pass:{keystore_password}"],
    ]
    for step in steps:
        done = subprocess.run(["openssl", *step], cwd=tls, capture_output=True, text=True)
        if done.returncode != 0:
            raise SecurityMaterialError(f"openssl {step[0]} failed: {done.stderr.strip()[-300:]}")
    (tls / "keystore-password").write_text(keystore_password)
    (tls / "scram-password").write_text(secrets.token_hex(16))
