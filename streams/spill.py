"""The due schedules' spill (models/schedule.py ``Spill``) in a RocksDB of the worker's own.

A schedule keeps a bounded number of customers in memory and spills the later ones here, so a
worker's memory does not grow with its customers. Nothing here is durable state: the schedules
are built again from the stored states by every adoption, so the database is emptied when the
worker starts and a partition's part of it when the partition goes. One database for the
process, a key prefix per partition and schedule: (prefix, due, customer) → nothing.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

from rocksdict import DbClosedError, Options, Rdict, WriteBatch

_DUE = struct.Struct(">Q")  # due + 2**63: unsigned big-endian sorts like the signed instant
_OFFSET = 2**63


class SpillDatabase:
    """The process's spill database; ``spill(partition, which)`` is one schedule's part of it."""

    def __init__(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)  # a previous run's spill means nothing now
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Small memtables: what is spilled is read back in order and deleted soon after.
        options.set_write_buffer_size(4 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        self._db = Rdict(str(path), options)

    def spill(self, partition: int, which: str) -> RocksSpill:
        return RocksSpill(self._db, f"{partition}/{which}/".encode())

    def close(self) -> None:
        self._db.close()


class LazySpill:
    """The spill database, opened (and emptied) at the first partition a worker adopts: an app
    built for anything else (a command, a test) leaves the directory alone."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: SpillDatabase | None = None

    def spill(self, partition: int, which: str) -> RocksSpill:
        if self._db is None:
            self._db = SpillDatabase(self._path)
        return self._db.spill(partition, which)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RocksSpill:
    def __init__(self, db: Rdict, prefix: bytes) -> None:
        self._db, self._prefix = db, prefix
        self._end = prefix[:-1] + bytes([prefix[-1] + 1])  # the first key after the prefix's
        # Where the earliest key can be: taking from the front leaves deletion markers there that
        # a seek from the prefix would step over one by one until RocksDB compacts them.
        self._from = prefix

    def add(self, entries: list[tuple[int, str]]) -> None:
        if not entries:
            return
        keys = [
            self._prefix + _DUE.pack(due + _OFFSET) + customer_id.encode("utf-8")
            for due, customer_id in entries
        ]
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.put(key, b"")
        self._db.write(batch)
        self._from = min(self._from, *keys)

    def first(self) -> int | None:
        for key in self._keys():
            return self._due(key)
        return None

    def take(self, count: int) -> list[tuple[int, str]]:
        taken: list[tuple[int, str]] = []
        batch = WriteBatch(raw_mode=True)
        for key in self._keys():
            if len(taken) == count:
                break
            taken.append((self._due(key), key[len(self._prefix) + _DUE.size :].decode("utf-8")))
            batch.delete(key)
            self._from = key
        self._db.write(batch)
        return taken

    def clear(self) -> None:
        # (A partition may be revoked while the worker stops, after the database was closed:
        # emptied at the next start anyway.)
        with contextlib.suppress(DbClosedError):
            self._db.delete_range(self._prefix, self._end)
        self._from = self._prefix

    def _keys(self) -> Iterator[bytes]:
        it = self._db.iter()
        it.seek(self._from)
        while it.valid():
            key = it.key()
            if not key.startswith(self._prefix):
                return
            yield key
            it.next()

    def _due(self, key: bytes) -> int:
        return int(_DUE.unpack_from(key, len(self._prefix))[0]) - _OFFSET
