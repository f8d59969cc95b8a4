"""The state store alone: what RocksDB itself takes in memory as N customers' states arrive.

    python -m tests.bench.store_memory CUSTOMERS PARTITIONS STATE_BYTES

Run by tests/bench/memory.py in a process of its own, after the worker, to say how much of the
worker's RSS growth is the store's: the customer-state table's partitions opened the way Faust
opens them (``RocksDBOptions`` with the worker's options: streams/app.py), then per customer
what a worker does to the store for a new customer — a read that misses, a write of a state of
STATE_BYTES (the worker's mean) — and, one customer in seven, a read of an earlier customer (a
sweep refresh). Prints one JSON line per tenth of the customers: {"customers", "rss"}.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from streams.app import CUSTOMER_STORE_OPTIONS
from tests.bench.recovery import _rss


def main(customers: int, partitions: int, state_bytes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tierpulse-store-") as directory:
        options = RocksDBOptions(**CUSTOMER_STORE_OPTIONS)
        stores = [options.open(Path(directory) / f"customer-state-{p}.db") for p in range(partitions)]
        print(json.dumps({"customers": 0, "rss": _rss(os.getpid())}), flush=True)
        rng, state = random.Random(3), os.urandom(state_bytes)
        step = max(1, customers // 10)
        for n in range(customers):
            key = f"m{n:08d}".encode()
            store = stores[n % partitions]
            store.get(key)
            store[key] = state
            if n % 7 == 0:
                earlier = rng.randrange(n + 1)
                stores[earlier % partitions].get(f"m{earlier:08d}".encode())
            if (n + 1) % step == 0:
                print(json.dumps({"customers": n + 1, "rss": _rss(os.getpid())}), flush=True)
        for store in stores:
            store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
