"""``tierpulse``: worker, demo, follow, schemas.

Every refusal a person can act on (bad policy, Kafka down, topics that do not
fit) is printed as one line (or the list of policy problems) with exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.events import Topic
from models.policy import PolicyError, load_policy
from models.schemas import input_schemas
from streams import demo
from streams.settings import Settings
from streams.topics import TopicLayoutError, bootstrap_servers, ensure_topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierpulse", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run one scorer worker (Faust)")
    demo_cmd = commands.add_parser("demo", help="produce a realistic event stream")
    demo_cmd.add_argument("--customers", type=int, default=300)
    demo_cmd.add_argument("--backfill-days", type=float, default=35)
    demo_cmd.add_argument("--live-seconds", type=float, default=float("inf"), help="then stop")
    demo_cmd.add_argument("--seed", type=int, default=7)
    follow = commands.add_parser("follow", help="print tier changes and alerts as they happen")
    follow.add_argument("--seconds", type=float, default=float("inf"))
    commands.add_parser("schemas", help="write the input JSON Schemas to deploy/schemas")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command != "worker":  # the client chatter of aiokafka is noise in a terminal tool
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings = Settings()
    try:
        if args.command == "worker":
            return _worker(settings)
        if args.command == "demo":
            asyncio.run(_demo(settings, args.customers, args.backfill_days, args.live_seconds, args.seed))
        elif args.command == "follow":
            asyncio.run(_follow(settings, args.seconds))
        elif args.command == "schemas":
            for name, text in input_schemas().items():
                Path("deploy/schemas", name).write_text(text, encoding="utf-8")
    except (PolicyError, TopicLayoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _worker(settings: Settings) -> int:
    policy = load_policy(settings.policy_path)  # refused here, before anything starts
    asyncio.run(ensure_topics(settings))
    from streams.app import create_app  # Faust is slow to import; only the worker needs it

    app = create_app(settings, policy)
    sys.argv = [
        "tierpulse",
        "worker",
        "-l",
        settings.log_level,
        "--web-host",
        settings.web_host,
        "--web-port",
        str(settings.web_port),
    ]
    app.main()
    return 0


async def _demo(settings: Settings, count: int, backfill_days: float, live_seconds: float, seed: int) -> None:
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    await ensure_topics(settings)
    topic_of = {kind: name for name, kind in settings.topics.input_kinds().items()}
    people = demo.customers(count, seed)
    now = datetime.now(UTC)
    backlog = list(demo.history(people, now - timedelta(days=backfill_days), now, seed=seed, messy=True))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), linger_ms=20)
    await producer.start()
    try:
        for message in tqdm(backlog, desc="demo backfill", unit="event"):
            await producer.send(topic_of[message.kind], message.value, key=message.key)
        await producer.flush()
        rng, ends = random.Random(seed), time.monotonic() + live_seconds
        print(f"demo: {len(backlog)} events of history sent; now live (one event a second per 50 customers)")
        while time.monotonic() < ends:
            start = datetime.now(UTC) - timedelta(seconds=1)
            chosen = rng.sample(people, max(1, count // 50))
            for message in demo.history(
                chosen, start, start + timedelta(seconds=1), seed=rng.getrandbits(32)
            ):
                if message.kind is not Topic.CUSTOMERS:
                    await producer.send(topic_of[message.kind], message.value, key=message.key)
            await asyncio.sleep(1)
    finally:
        await producer.stop()


async def _follow(settings: Settings, seconds: float) -> None:
    from aiokafka import AIOKafkaConsumer

    names = settings.topics
    consumer = AIOKafkaConsumer(
        names.tier_changes,
        names.alerts,
        bootstrap_servers=bootstrap_servers(settings),
        auto_offset_reset="latest",
    )
    await consumer.start()
    ends = time.monotonic() + seconds
    try:
        while time.monotonic() < ends:
            batch = await consumer.getmany(timeout_ms=500)
            for message in (m for messages in batch.values() for m in messages):
                body = json.loads(message.value)
                if message.topic == names.tier_changes:
                    top = sorted(body["reasons"], key=lambda r: r["contribution"])[:2]
                    weakest = ", ".join(f"{r['kpi']}={r['value']:.3g}" for r in top)
                    print(
                        f"TIER  {body['customer_id']:<12} {body['previous_tier']:>9} -> {body['new_tier']:<9}"
                        " "
                        f"score {body['score']:5.1f}  [{body['segment']}] weakest: {weakest}",
                        flush=True,
                    )
                else:
                    print(
                        f"ALERT {body['customer_id']:<12} {body['rule']} {body['state']} "
                        f"({body['severity']}, value {body['value']:.3g}, threshold {body['threshold']:.3g})",
                        flush=True,
                    )
    finally:
        await consumer.stop()


if __name__ == "__main__":
    sys.exit(main())
