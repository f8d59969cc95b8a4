"""``python -m tests.bench [core|warmup|catchup|alerts|pipeline|peer|adoption|recovery|memory|backtest|ui|all]
[--customers N] [--days D]``

Without --customers each benchmark runs at its own scale: warmup 200 customers, catchup and
alerts 300 (35 days), pipeline 1,000 (a month of their events), peer and backtest 500 (the demo
month), ui 100, adoption and recovery 100,000, memory 1,000,000 (not part of "all").
Results go to bench-results/ (--json-dir DIR).
"""

from __future__ import annotations

import argparse

from tests.bench import (
    adoption,
    alert_noise,
    backtest,
    catchup,
    core,
    memory,
    peer,
    pipeline,
    recovery,
    ui,
    warmup,
)

parser = argparse.ArgumentParser(prog="python -m tests.bench")
parser.add_argument(
    "which",
    nargs="?",
    default="all",
    choices=[
        "core",
        "warmup",
        "catchup",
        "alerts",
        "pipeline",
        "peer",
        "adoption",
        "recovery",
        "memory",
        "backtest",
        "ui",
        "all",
    ],
)
parser.add_argument("--customers", type=int, help="customers, for every benchmark chosen")
parser.add_argument("--days", type=float, help="days of history (pipeline, peer: 30, catchup: 35)")
parser.add_argument("--json-dir", default="bench-results")
args = parser.parse_args()
if args.which in ("core", "all"):
    core.main(f"{args.json_dir}/core.json")
if args.which in ("warmup", "all"):
    warmup.main(args.customers or 200, f"{args.json_dir}/warmup.json")
if args.which in ("catchup", "all"):
    catchup.main(args.customers or 300, args.days or 35, f"{args.json_dir}/catchup.json")
if args.which in ("alerts", "all"):
    alert_noise.main(args.customers or 300, args.days or 35, f"{args.json_dir}/alerts.json")
if args.which in ("pipeline", "all"):
    pipeline.main(args.customers or 1_000, args.days or 30, f"{args.json_dir}/pipeline.json")
if args.which in ("peer", "all"):
    peer.main(args.customers or 500, args.days or 30, f"{args.json_dir}/peer.json")
if args.which in ("backtest", "all"):
    backtest.main(args.customers or 500, args.days or 30, f"{args.json_dir}/backtest.json")
if args.which in ("ui", "all"):
    ui.main(args.customers or 100, args.days or 30, f"{args.json_dir}/ui.json")
if args.which in ("adoption", "all"):
    adoption.main(args.customers or 100_000, f"{args.json_dir}/adoption.json")
if args.which in ("recovery", "all"):
    recovery.main(args.customers or 100_000, f"{args.json_dir}/recovery.json")
if args.which == "memory":  # not in "all": a million customers through one worker take an hour
    memory.main(args.customers or 1_000_000, f"{args.json_dir}/memory.json")
