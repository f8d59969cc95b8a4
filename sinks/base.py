"""The one small contract every output shares.

A sink is set up once (``setup`` checks the connection and raises
:class:`SinkUnavailable` with a one-line reason), collects items with ``add``,
and writes them with ``flush``. ``flush`` raising :class:`SinkUnavailable` means
nothing added was lost: the items stay and the next flush tries again.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

Item = TypeVar("Item", contravariant=True)


class SinkUnavailable(Exception):  # noqa: N818 - names the condition the caller handles
    """The sink's service cannot be reached now; the message says which and how to start it."""


class Sink(Protocol[Item]):
    name: str

    async def setup(self) -> None: ...

    def add(self, item: Item) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...
