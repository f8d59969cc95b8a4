"""The HTTP pages' decisions, without a server: the token, paging, readiness."""

from __future__ import annotations

from streams.web import authorised, is_ready, page_of


def test_the_token_is_asked_for_only_when_one_is_set_and_must_match_whole() -> None:
    assert authorised(None, None) and authorised("Bearer x", None)
    assert authorised("Bearer s3cret", "Bearer s3cret")
    assert not authorised(None, "Bearer s3cret")
    assert not authorised("Bearer s3cre", "Bearer s3cret")
    assert not authorised("Bearer s3cret2", "Bearer s3cret")


def test_pages_of_customer_ids_follow_their_cursor_to_the_end_once_each() -> None:
    found = [f"c{n:02d}" for n in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = page_of(found, cursor, 3)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert seen == found and pages == 3
    assert page_of(found[:6], None, 3)[1] == "c02"
    assert page_of(found[:6], "c02", 3) == (["c03", "c04", "c05"], None)  # a full last page ends too
    assert page_of([], None, 3) == ([], None)


def test_ready_unless_redis_is_down_or_a_rebalance_is_under_way() -> None:
    base = {"redis": "up", "rebalancing": False, "alertmanager": "down"}
    assert is_ready(base)  # Alertmanager down does not take the worker out
    assert is_ready({**base, "redis": "off"})
    assert not is_ready({**base, "redis": "down"})
    assert not is_ready({**base, "rebalancing": True})
    behind = {**base, "lag_messages": 5_000}
    assert is_ready(behind)  # the lag counts only with a bound
    assert is_ready(behind, max_lag_messages=5_000) and not is_ready(behind, max_lag_messages=4_999)
