"""The Kafka security of every client — the worker, the topic admin, demo and follow — from
one place, so that none of them can start against a secured broker without it.

The protocol is ``TIERPULSE_BROKER_SECURITY_PROTOCOL`` when set; otherwise it follows from what
is configured: a SASL mechanism with TLS (a CA file or a client certificate) is ``SASL_SSL``,
without TLS ``SASL_PLAINTEXT``; TLS alone is ``SSL``; nothing is ``PLAINTEXT``. TLS without a
CA file trusts the system's CAs (a managed Kafka's public certificate).
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings


def security_protocol(settings: Settings) -> str:
    if settings.broker_security_protocol is not None:
        return settings.broker_security_protocol
    tls = settings.broker_ssl_cafile is not None or settings.broker_ssl_certfile is not None
    if settings.broker_sasl_mechanism is not None:
        return "SASL_SSL" if tls else "SASL_PLAINTEXT"
    return "SSL" if tls else "PLAINTEXT"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the protocols that use TLS (None for the others)."""
    if security_protocol(settings) not in ("SSL", "SASL_SSL"):
        return None
    cafile = None if settings.broker_ssl_cafile is None else str(settings.broker_ssl_cafile)
    context = ssl.create_default_context(cafile=cafile)
    if settings.broker_ssl_certfile is not None:  # a client certificate (mutual TLS)
        keyfile = None if settings.broker_ssl_keyfile is None else str(settings.broker_ssl_keyfile)
        context.load_cert_chain(str(settings.broker_ssl_certfile), keyfile)
    return context


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    protocol = security_protocol(settings)
    options: dict[str, Any] = {"security_protocol": protocol, "ssl_context": ssl_context(settings)}
    if protocol.startswith("SASL"):
        password = settings.broker_password.get_secret_value() if settings.broker_password else ""
        options |= {
            "sasl_mechanism": settings.broker_sasl_mechanism or "PLAIN",
            "sasl_plain_username": settings.broker_username or "",
            "sasl_plain_password": password,
        }
    return options


def faust_credentials(settings: Settings) -> Any:
    """The same, as the Faust app takes it (``broker_credentials``)."""
    import faust  # slow to import: only the worker needs it

    options = aiokafka_options(settings)
    protocol = options["security_protocol"]
    if protocol.startswith("SASL"):
        # Faust derives SASL_SSL from the TLS context's presence, as this module does.
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options["ssl_context"],
        )
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None
