"""The customers' name index in Redis: find a customer by the start of its name, from any worker.

The sorted set ``<prefix>names`` holds one member per customer with a name, all at score 0, so
Redis orders them by their bytes: ``<search key>\\0<name>\\0<customer id>``. The search key is
the name as names are compared — NFKC (full-width ``Ａ`` is ``A``), casefolded, its spaces
collapsed — so the names that start with a query's key are one ZRANGEBYLEX range. The name
itself comes next, to be shown as the profile spells it without reading anything else.

The member is written by the script that writes the snapshot (sinks/rollups.py), which keeps it
in the customer's contribution hash too: a renamed customer's old member leaves in the same
step the new one comes, and a snapshot written again changes nothing. Names come from
producers: a ``\\0`` is dropped from the member (and only there), so the member always splits
back into its three parts — the customer id, last, may hold anything.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from models.evaluation import Snapshot

PAGE = 50  # matches per page of a name search
MAX_QUERY = 256  # characters of a query that count (a profile's name has at most 256)
_SEPARATOR = "\x00"


@dataclass(frozen=True, slots=True)
class NameMatch:
    customer_id: str
    name: str  # as the profile spells it (without NUL characters)


@dataclass(frozen=True, slots=True)
class NameSearch:
    """One page of the customers whose name starts with a query, by name."""

    matches: tuple[NameMatch, ...]
    more: bool  # a next page has more


def name_of(snapshot: Snapshot) -> str:
    """The name the customer's latest profile gives it ("" when none)."""
    return snapshot.name


def search_key(text: str) -> str:
    """A name or a query as names are compared: NFKC, casefolded, spaces collapsed, no NUL."""
    return " ".join(unicodedata.normalize("NFKC", text.replace(_SEPARATOR, "")).casefold().split())


def index_member(name: str, customer_id: str) -> str:
    """The customer's member of the name index ("" for no name: nothing to index)."""
    key = search_key(name)
    if not key:
        return ""
    return _SEPARATOR.join((key, name.replace(_SEPARATOR, "").strip(), customer_id))


def lex_range(query: str) -> tuple[bytes, bytes] | None:
    """ZRANGEBYLEX bounds of the members whose search key starts with the query's (None: the
    query has no key). No UTF-8 text holds the byte 0xff, so ``[key`` to ``[key\\xff`` holds
    exactly the members that start with the key's bytes."""
    key = search_key(query[:MAX_QUERY]).encode()
    return (b"[" + key, b"[" + key + b"\xff") if key else None


def parse_member(member: bytes | str) -> NameMatch:
    text = member.decode("utf-8") if isinstance(member, bytes) else member
    _, name, customer_id = text.split(_SEPARATOR, 2)
    return NameMatch(customer_id, name)
