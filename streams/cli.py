"""``tierpulse``: worker, demo, follow, schemas, policy check.

Every refusal a person can act on is printed as one line per problem, never a
traceback: exit code 2 for a bad setting, a bad policy or topics that do not fit
(and Kafka refusing the worker at start), 3 when a command's own Kafka client
cannot reach the broker, 1 when some dead letters could not be re-sent.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import logging
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_settings import SettingsError

from models.policy import Policy, PolicyError, load_policy, load_shadow_policy
from models.schemas import input_schemas, output_schemas
from streams import demo
from streams.security import aiokafka_options
from streams.settings import Settings, package_version
from streams.topics import TopicLayoutError, bootstrap_servers, ensure_topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierpulse", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tierpulse {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="run one scorer worker (Faust)",
        description="Run one scorer worker. It is configured by environment variables "
        "(README, 'Running the scorer'); every one, with its default:",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "-l",
        "--loglevel",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level (default: TIERPULSE_LOG_LEVEL, info)",
    )
    demo_cmd = commands.add_parser("demo", help="produce a realistic event stream")
    demo_cmd.add_argument("--customers", type=int, default=300)
    demo_cmd.add_argument("--backfill-days", type=float, default=35)
    demo_cmd.add_argument("--live-seconds", type=float, default=float("inf"), help="then stop")
    demo_cmd.add_argument("--seed", type=int, default=7)
    follow = commands.add_parser("follow", help="print tier changes and alerts as they happen")
    follow.add_argument("--seconds", type=float, default=float("inf"))
    follow.add_argument("--from-beginning", action="store_true", help="read the topics from their start")
    follow.add_argument("--customer", help="only this customer's changes and alerts")
    follow.add_argument("--json", action="store_true", help="one JSON message per line, as sent")
    schemas = commands.add_parser("schemas", help="write the input and output topics' JSON Schemas")
    schemas.add_argument(
        "--dir", type=Path, default=Path("deploy/schemas"), help="where (default: %(default)s)"
    )
    dead = commands.add_parser("dead-letters", help="list dead letters, or send fixed ones back")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    for name, text in (("list", "list the dead letters (oldest first)"), ("resend", _RESEND_HELP)):
        chosen = dead_commands.add_parser(name, help=text)
        chosen.add_argument("--topic", help="of the original, e.g. orders")
        chosen.add_argument("--reason", help="a part of the reason, e.g. internal_error")
        chosen.add_argument("--since", help="dead-lettered at or after, RFC 3339 (2026-11-30T08:00)")
        chosen.add_argument("--customer")
        chosen.add_argument("--json", action="store_true", help="one dead letter per line, as stored")
        if name == "resend":
            chosen.add_argument("--yes", action="store_true", help="send (without it: say what would go)")
    backtest = commands.add_parser(
        "backtest",
        help="run a candidate policy over the recorded input beside the current one; write nothing",
        description="Read the input topics once (as a worker reads them) through the baseline and the "
        "candidate policy, in memory, and compare: customers per tier at the end and per day, the "
        "transition matrix, the customers that end in another tier and the KPIs that moved them, "
        "flapping, alerts. Writes a table here and JSON, CSV and an HTML chart to --out.",
    )
    backtest.add_argument("--policy", type=Path, required=True, help="the candidate policy file")
    backtest.add_argument(
        "--baseline", type=Path, help="the policy to compare with (default: TIERPULSE_POLICY_PATH)"
    )
    backtest.add_argument(
        "--from",
        dest="since",
        type=_instant,
        help="read events from this time on (RFC 3339, by Kafka timestamp; profiles are read whole)",
    )
    backtest.add_argument("--to", dest="until", type=_instant, help="and up to this time (default: now)")
    backtest.add_argument(
        "--out", type=Path, default=Path("backtest"), help="where the report files go (default: %(default)s)"
    )
    policy_cmd = commands.add_parser("policy", help="policy files")
    policy_commands = policy_cmd.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser(
        "check", help="validate a policy file as the worker does and summarise it (exit 2: invalid)"
    )
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command != "worker":  # aiokafka's client chatter is noise in a terminal tool
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures reach us as exceptions
    if args.command == "policy":
        return _check_policy(args.file)
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        for line in _setting_problems(error):
            print(f"error: {line}", file=sys.stderr)
        return 2
    try:
        if args.command == "worker":
            if args.loglevel:
                settings = settings.model_copy(update={"log_level": args.loglevel})
            return _worker(settings)
        if args.command == "demo":
            asyncio.run(_demo(settings, args.customers, args.backfill_days, args.live_seconds, args.seed))
        elif args.command == "backtest":
            return asyncio.run(_backtest(settings, args))
        elif args.command == "dead-letters":
            return asyncio.run(_dead_letters(settings, args))
        elif args.command == "follow":
            asyncio.run(_follow(settings, args.seconds, args.from_beginning, args.customer, args.json))
        elif args.command == "schemas":
            args.dir.mkdir(parents=True, exist_ok=True)
            for name, text in {**input_schemas(), **output_schemas()}.items():
                (args.dir / name).write_text(text, encoding="utf-8")
            print(f"wrote the JSON Schemas of every topic to {args.dir}")
    except (PolicyError, TopicLayoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:  # a command's own client (demo, follow, dead-letters)
        print(
            f"error: Kafka at {settings.broker} does not answer, or refuses this client "
            f"({type(error).__name__}): start it with 'deploy/dev run', or check TIERPULSE_BROKER "
            "and the TIERPULSE_BROKER_* security settings",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        return 0
    return 0


def _worker(settings: Settings) -> int:
    policy = load_policy(settings.policy_path)  # refused here, before anything starts
    shadow = (
        None
        if settings.shadow_policy_path is None
        else load_shadow_policy(settings.shadow_policy_path, policy)
    )
    asyncio.run(ensure_topics(settings))
    from streams.app import create_app  # Faust is slow to import; only the worker needs it

    app = create_app(settings, policy, shadow=shadow)
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
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(settings), linger_ms=20, **aiokafka_options(settings)
    )
    await producer.start()
    try:
        for message in tqdm(backlog, desc="demo backfill", unit="event"):
            await producer.send(topic_of[message.kind], message.value, key=message.key)
        await producer.flush()
        rng, ends = random.Random(seed), time.monotonic() + live_seconds
        money_rng = random.Random(f"{seed}:live-money")
        # What follows an order (delivery, payments, a ticket's answers) waits here for its time.
        later: list[tuple[datetime, int, demo.Message]] = []
        order = itertools.count()  # (ties in time go in the order they were made)
        print(f"demo: {len(backlog)} events of history sent; now live (an order a second, and what follows)")
        while time.monotonic() < ends:
            now = datetime.now(UTC)
            weights = [c.orders_per_day for c in people]
            [customer] = rng.choices(people, weights)
            for message in demo.live_activity(customer, now, now + timedelta(days=3), rng, money_rng):
                heapq.heappush(later, (message.occurred_at, next(order), message))
            while later and later[0][0] <= now:
                _, _, message = heapq.heappop(later)
                await producer.send(topic_of[message.kind], message.value, key=message.key)
            await asyncio.sleep(1)
    finally:
        await producer.stop()


def _settings_help() -> str:
    """Every TIERPULSE_* variable with its default (secrets shown as unset or ***)."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "***" if "password" in name or "token" in name else default
        if hasattr(shown, "model_dump"):  # the topic names: one variable each
            for topic, value in shown.model_dump().items():
                lines.append(f"  TIERPULSE_{name.upper()}__{topic.upper()}={value}")
            continue
        text = "" if shown is None else str(shown)
        lines.append(
            f"  TIERPULSE_{name.upper()}={text}" + (f"  ({field.description})" if field.description else "")
        )
    return "environment:\n" + "\n".join(lines)


def _setting_problems(error: ValidationError | SettingsError) -> list[str]:
    """One line per problem, naming the environment variable."""
    if isinstance(error, SettingsError):  # a list or object that is not JSON
        return [f'{error} (lists and objects are JSON, e.g. TIERPULSE_WATCH_LIST=\'["c1", "c2"]\')']
    lines = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        if not problem["loc"]:  # a rule across settings: its message names them
            lines.append(message)
            continue
        variable = "TIERPULSE_" + "__".join(str(part).upper() for part in problem["loc"])
        lines.append(f"{variable}={problem.get('input')!r}: {message}")
    return lines


def _check_policy(path: Path) -> int:
    try:
        policy = load_policy(path)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot read the policy {path}: {error.strerror}", file=sys.stderr)
        return 2
    print("\n".join(describe_policy(policy, path)))
    return 0


_RESEND_HELP = "send the originals of the chosen dead letters back to their topics (at-least-once)"


async def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from streams import dead_letters

    chosen = dead_letters.Filter(args.topic, args.reason, args.since, args.customer)
    letters = await dead_letters.read(settings, chosen)
    for letter in letters:
        print(json.dumps(letter, ensure_ascii=False) if args.json else dead_letters.describe(letter))
    if args.dead_command == "list":
        print(f"{len(letters)} dead letters", file=sys.stderr)
        return 0
    if not args.yes:
        print(f"{len(letters)} would be re-sent: add --yes to send them", file=sys.stderr)
        return 0
    sent, refused = await dead_letters.resend(settings, letters)
    for reason in refused:
        print(f"not re-sent: {reason}", file=sys.stderr)
    print(f"re-sent {sent} of {len(letters)} dead letters to their topics", file=sys.stderr)
    return 0 if not refused else 1


def describe_policy(policy: Policy, path: Path) -> list[str]:
    """What a policy does, in a few lines a reviewer can read."""
    lines = [
        f"policy {policy.version} ({path}): valid",
        f"tiers, best first: {', '.join(policy.tiers)}; default segment: {policy.default_segment}",
    ]
    for name in policy.segments:
        segment = policy.segment_named(name)
        weights = ", ".join(f"{kpi} {weight:g}" for kpi, weight, _, _ in segment.scored)
        minimums = ", ".join(f"{tier} {minimum:g}" for tier, minimum in segment.tier_minimums)
        sla = ", ".join(f"P{i + 1} {us / 60_000_000:g} min" for i, us in enumerate(segment.sla_us))
        lines += [
            f"segment {name}:",
            f"  weights: {weights}",
            f"  tier minimums: {minimums}; hysteresis {segment.hysteresis:g}; "
            f"warm-up {segment.warmup_us / 86_400_000_000:g} days",
            f"  SLA: {sla}",
        ]
    for rule in policy.alerts:
        if rule.kpi is not None:
            bounds = [
                f"{side} {bound:g}"
                for side, bound in (("below", rule.kpi.below), ("above", rule.kpi.above))
                if bound is not None
            ]
            what = f"{rule.kpi.name} {' or '.join(bounds)}"
        else:
            assert rule.ticket is not None
            ticket = rule.ticket
            what = f"a {ticket.priority} ticket {ticket.minutes_before_deadline:g} min before its SLA"
        scope = (f"; tiers {', '.join(rule.tiers)}" if rule.tiers else "") + (
            f"; segments {', '.join(rule.segments)}" if rule.segments else ""
        )
        lines.append(f"alert {rule.name} ({rule.severity}): {what}{scope}")
    return lines


def weakest(reasons: list[dict[str, float]], count: int = 2) -> list[dict[str, float]]:
    """The KPIs that cost the score most: by points lost, weight × (100 − score); a KPI that
    scores 100 costs nothing, whatever its weight."""
    return sorted(reasons, key=lambda r: -r["weight"] * (100 - r["score"]))[:count]


async def _follow(
    settings: Settings, seconds: float, from_beginning: bool, customer: str | None, as_json: bool
) -> None:
    from aiokafka import AIOKafkaConsumer

    names = settings.topics
    consumer = AIOKafkaConsumer(
        names.tier_changes,
        names.alerts,
        bootstrap_servers=bootstrap_servers(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        **aiokafka_options(settings),
    )
    await consumer.start()
    ends = time.monotonic() + seconds
    try:
        while time.monotonic() < ends:
            batch = await consumer.getmany(timeout_ms=500)
            for message in (m for messages in batch.values() for m in messages):
                body = json.loads(message.value)
                if customer is not None and body.get("customer_id") != customer:
                    continue
                if as_json:
                    print(json.dumps(body, ensure_ascii=False), flush=True)
                elif message.topic == names.tier_changes:
                    costly = ", ".join(f"{r['kpi']}={r['value']:.3g}" for r in weakest(body["reasons"]))
                    print(
                        f"TIER  {body['customer_id']:<12} {body['previous_tier']:>9} -> {body['new_tier']:<9}"
                        " "
                        f"score {body['score']:5.1f}  [{body['segment']}] weakest: {costly}",
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


def _instant(text: str) -> datetime:
    """An RFC 3339 instant, or a date (midnight UTC)."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time or date: {text!r}") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


async def _backtest(settings: Settings, args: argparse.Namespace) -> int:
    from streams.backtest import policy_run, replay
    from streams.backtest_html import render
    from streams.backtest_report import compare, to_csv, to_text

    logging.getLogger("tierpulse").setLevel(logging.ERROR)  # invalid input: counted, not listed
    baseline_policy = load_policy(args.baseline or settings.policy_path)
    candidate_policy = load_policy(args.policy)
    runs = [policy_run(baseline_policy, settings), policy_run(candidate_policy, settings)]
    events = await replay(settings, runs, args.since, args.until)
    summary = compare(runs[0], runs[1], events)
    print(to_text(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backtest.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (args.out / "differing.csv").write_text(to_csv(summary), encoding="utf-8")
    (args.out / "backtest.html").write_text(render(summary), encoding="utf-8")
    print(f"\nwrote {args.out}/backtest.json, differing.csv and backtest.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
