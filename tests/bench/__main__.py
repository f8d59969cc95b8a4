"""``python -m tests.bench [core|pipeline|adoption|recovery|all] [--customers N] [--days D]``

Results go to bench-results/ (--json-dir DIR).
"""

from __future__ import annotations

import argparse

from tests.bench import adoption, core, pipeline, recovery

parser = argparse.ArgumentParser(prog="python -m tests.bench")
parser.add_argument(
    "which", nargs="?", default="all", choices=["core", "pipeline", "adoption", "recovery", "all"]
)
parser.add_argument("--customers", type=int, default=1000)
parser.add_argument("--days", type=float, default=30)
parser.add_argument("--json-dir", default="bench-results")
args = parser.parse_args()
if args.which in ("core", "all"):
    core.main(f"{args.json_dir}/core.json")
if args.which in ("pipeline", "all"):
    pipeline.main(args.customers, args.days, f"{args.json_dir}/pipeline.json")
if args.which in ("adoption", "all"):
    adoption.main(args.customers, f"{args.json_dir}/adoption.json")
if args.which in ("recovery", "all"):
    recovery.main(args.customers, f"{args.json_dir}/recovery.json")
