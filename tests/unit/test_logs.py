"""What the logs show: repeated warnings limited (the first, then one a minute with the count),
and no secret in a sink's messages."""

from __future__ import annotations

import logging

from streams.logs import RepeatLimit


def _record(
    message: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_a_repeated_error_is_written_once_a_minute_with_the_count_held_back() -> None:
    now = [0.0]
    limit = RepeatLimit(every=60, clock=lambda: now[0])
    written = []
    for second in range(0, 150):  # one retry error a second for two and a half minutes
        now[0] = float(second)
        record = _record("connection to %s failed", "127.0.0.1:19092")
        if limit.filter(record):
            written.append((second, record.getMessage()))
    assert [s for s, _ in written] == [0, 60, 120]
    assert written[0][1] == "connection to 127.0.0.1:19092 failed"
    assert (
        written[1][1]
        == "connection to 127.0.0.1:19092 failed [59 more like this not logged in the last 60 s]"
    )
    now[0] = 400.0  # quiet, then again: a new start, saying what the last minute held back
    record = _record("connection to %s failed", "127.0.0.1:19092")
    assert (
        limit.filter(record) and "[29 more like this not logged before a quiet spell]" in record.getMessage()
    )


def test_other_kinds_and_info_lines_are_not_limited() -> None:
    limit = RepeatLimit(every=60, clock=lambda: 0.0)
    assert limit.filter(_record("broker down"))
    assert limit.filter(_record("redis down", name="tierpulse.app"))  # another kind
    assert not limit.filter(_record("broker down"))
    assert all(limit.filter(_record("emit %s", "x", level=logging.INFO)) for _ in range(5))


def test_the_kinds_remembered_are_bounded() -> None:
    limit = RepeatLimit(every=60, clock=lambda: 0.0, kinds=10)
    for n in range(1000):
        limit.filter(_record(f"distinct message {n}"))
    assert len(limit._kinds) == 10


def test_a_redis_password_never_shows_in_the_sink_s_messages() -> None:
    from sinks.redis import RedisSnapshotSink

    sink = RedisSnapshotSink("redis://ops:hunter2-secret@127.0.0.1:1/0", "t:")
    assert "hunter2-secret" not in sink.url and sink.url == "redis://ops:***@127.0.0.1:1/0"
    assert RedisSnapshotSink("rediss://:pw-only@cache:6380", "t:").url == "rediss://:***@cache:6380"
    assert RedisSnapshotSink("redis://127.0.0.1:16379/0", "t:").url == "redis://127.0.0.1:16379/0"
