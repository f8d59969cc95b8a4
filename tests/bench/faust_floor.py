"""The peer benchmark's floor: what a Faust agent costs per message before any scoring.

Started by tests/bench/peer.py as a subprocess, with the project's interpreter:

    python tests/bench/faust_floor.py CONFIG.json

The same source topics, batch size and batch window as a TierPulse worker
(``stream.take_events``, raw serializers), and per message only a JSON decode. With
``"table": true`` each batch also writes one small value per customer it saw to a RocksDB table
(its changelog flushed before the next batch, as a worker does): the least that Faust agents and
tables — the project's fixed choice — cost. The rate is counted in the app, from its first
message to the last, into a progress file (the Quix peer's format: peer.py follows both alike).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

from streams.app import batch_options
from streams.tables import CurrentEvents


class Progress:
    def __init__(self, expected: int, path: Path) -> None:
        self.expected, self.path = expected, path
        self.inputs = 0
        self.first_at: float | None = None
        self.done_at: float | None = None

    def add(self, count: int) -> None:
        self.first_at = self.first_at or time.time()
        self.inputs += count
        if self.inputs >= self.expected and self.done_at is None:
            self.done_at = time.time()
            self.write()

    def write(self) -> None:
        scratch = self.path.with_suffix(".tmp")
        counted = {"inputs": self.inputs, "rekeyed": 0, "first_at": self.first_at, "done_at": self.done_at}
        scratch.write_text(json.dumps(counted))
        os.replace(scratch, self.path)  # peer.py never reads half a file


def build(config: dict[str, Any]) -> faust.App:
    # The worker's consumer settings (streams/app.py), unless "faust_defaults" asks for Faust's.
    tuned = {} if config.get("faust_defaults") else batch_options(config["batch_size"])
    app = faust.App(
        config["group"],
        broker=f"kafka://{config['broker']}",
        store="rocksdb://",
        datadir=config["state_dir"],
        topic_partitions=config["partitions"],
        web_enabled=False,
        **tuned,
    )
    source = app.topic(*config["input_topics"], key_serializer="raw", value_serializer="raw")
    partitions = config["partitions"]
    table = (
        app.Table(f"{config['group']}-floor", key_type=bytes, value_type=bytes, partitions=partitions)
        if config["table"]
        else None
    )
    progress = Progress(config["expected_inputs"], Path(config["progress"]))

    @app.agent(source)
    async def floor(stream: Any) -> Any:
        async for events in stream.take_events(config["batch_size"], within=config["batch_seconds"]):
            seen: dict[bytes, int] = {}
            for event in events:
                with contextlib.suppress(ValueError):  # the demo month's malformed messages
                    json.loads(event.message.value)
                if event.message.key:
                    seen[event.message.key] = event.message.partition
            if table is not None:
                current = CurrentEvents(events, config["input_topics"][0])
                for key, partition in seen.items():
                    with current.of(partition):
                        table[key] = b"%d" % len(events)
                await app.producer.flush()
            progress.add(len(events))
            yield None

    @app.timer(interval=0.5)
    async def report() -> None:
        progress.write()

    return app


if __name__ == "__main__":
    settings = json.loads(Path(sys.argv[1]).read_text())
    faust.Worker(build(settings), loglevel="warning", quiet=True).execute_from_commandline()
