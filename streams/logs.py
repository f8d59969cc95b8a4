"""Repeated log lines, limited: an outage must not write a line per retry.

A broker that is away for 30 s made the clients below Faust write 129,000 error lines. A line
of WARNING or worse goes out the first time its kind (logger and message template) is seen;
the same kind again within ``every`` seconds is counted, not written; the first one after that
goes out saying how many were held back. A kind quiet for ``every`` seconds starts over, its
first line saying how many were held back before the quiet.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Kind:
    written: float  # when a line of this kind last went out
    seen: float  # when one last came
    held: int = 0  # lines not written since


class RepeatLimit(logging.Filter):
    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic, kinds: int = 1024):
        super().__init__()
        self.every, self.clock, self.kinds = every, clock, kinds
        self._kinds: OrderedDict[tuple[str, str], _Kind] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now, key = self.clock(), (record.name, str(record.msg))
        kind = self._kinds.get(key)
        if kind is None or now - kind.seen >= self.every:  # new, or back after a quiet spell
            if kind is not None and kind.held:
                _say_held(record, kind.held, "before a quiet spell")
            self._kinds[key] = _Kind(now, now)
            self._kinds.move_to_end(key)
            while len(self._kinds) > self.kinds:  # bounded, whatever the messages
                self._kinds.popitem(last=False)
            return True
        kind.seen = now
        if now - kind.written < self.every:
            kind.held += 1
            return False
        _say_held(record, kind.held, f"in the last {now - kind.written:.0f} s")
        kind.written, kind.held = now, 0
        return True


def _say_held(record: logging.LogRecord, held: int, when: str) -> None:
    record.msg, record.args = f"{record.getMessage()} [{held} more like this not logged {when}]", ()


def limit_repeats(every: float = 60.0) -> None:
    """Put the limit on every handler of the root logger (where Faust's worker writes)."""
    for handler in logging.getLogger().handlers:  # one limit each: each must see every line
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(RepeatLimit(every))
